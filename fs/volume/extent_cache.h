// In-memory view of extent maps: a bounded LRU of clean entries (as read
// from LMDB) plus pinned dirty entries (changed in memory, not yet
// committed). Dirty entries are never evicted, so a miss means LMDB holds the
// current value. Sharded: no global lock on the I/O path.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace cmkfs::fs {

constexpr uint64_t kNoSlot = ~0ull;

struct ExtKey {
  uint64_t rid = 0;
  uint64_t idx = 0;
  bool operator==(const ExtKey&) const = default;
};

struct ExtKeyHash {
  size_t operator()(const ExtKey& k) const {
    uint64_t h =
        k.rid * 0x9E3779B97F4A7C15ull ^ (k.idx + 0x632BE59BD9B4E019ull);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return static_cast<size_t>(h);
  }
};

struct ExtEntry {
  uint64_t slot = kNoSlot;  // kNoSlot: unmapped (reads as zeros)
  bool exclusive = false;   // slot refcount is 1: may be written in place
};

class ExtentCache {
 public:
  explicit ExtentCache(uint64_t cache_bytes);
  // Thread-safe. Returns false on a miss.
  bool Get(const ExtKey& key, ExtEntry* out);
  // Inserts a clean entry unless the key is present.
  void InsertClean(const ExtKey& key, const ExtEntry& e);
  // Inserts or replaces an entry and pins it as dirty for generation `gen`.
  void SetDirty(const ExtKey& key, const ExtEntry& e, uint64_t gen);
  // Unpins the entry if it was last dirtied in a generation <= `gen`.
  void MarkClean(const ExtKey& key, uint64_t gen);
  // Every cached entry of `rid` loses `exclusive` (its slots became shared).
  void ClearExclusive(uint64_t rid);
  void DropResource(uint64_t rid);
  size_t size() const;

 private:
  struct Node {
    ExtEntry e;
    uint64_t dirty_gen = 0;  // 0 = clean
    bool in_lru = false;
    std::list<ExtKey>::iterator lru_it;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<ExtKey, Node, ExtKeyHash> map;
    std::list<ExtKey> lru;  // clean entries, most recent first
  };
  Shard& ShardFor(const ExtKey& k) {
    return shards_[ExtKeyHash()(k) % shards_.size()];
  }
  void EvictLocked(Shard& s);
  std::vector<Shard> shards_;
  size_t per_shard_capacity_;
};

}  // namespace cmkfs::fs
