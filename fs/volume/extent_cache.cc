#include "extent_cache.h"

#include <algorithm>

namespace cmkfs::fs {

namespace {
constexpr size_t kShards = 64;
// Rough per-entry footprint: hash node + list node + bucket.
constexpr size_t kEntryBytes = 112;
}  // namespace

ExtentCache::ExtentCache(uint64_t cache_bytes)
    : shards_(kShards),
      per_shard_capacity_(
          std::max<size_t>(64, cache_bytes / kEntryBytes / kShards)) {}

bool ExtentCache::Get(const ExtKey& key, ExtEntry* out) {
  Shard& s = ShardFor(key);
  std::lock_guard lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) return false;
  *out = it->second.e;
  if (it->second.in_lru && it->second.lru_it != s.lru.begin()) {
    s.lru.splice(s.lru.begin(), s.lru, it->second.lru_it);
  }
  return true;
}

void ExtentCache::InsertClean(const ExtKey& key, const ExtEntry& e) {
  Shard& s = ShardFor(key);
  std::lock_guard lock(s.mu);
  auto [it, inserted] = s.map.try_emplace(key);
  if (!inserted) return;
  it->second.e = e;
  s.lru.push_front(key);
  it->second.lru_it = s.lru.begin();
  it->second.in_lru = true;
  EvictLocked(s);
}

void ExtentCache::SetDirty(const ExtKey& key, const ExtEntry& e, uint64_t gen) {
  Shard& s = ShardFor(key);
  std::lock_guard lock(s.mu);
  Node& n = s.map[key];
  n.e = e;
  n.dirty_gen = gen;
  if (n.in_lru) {
    s.lru.erase(n.lru_it);
    n.in_lru = false;
  }
}

void ExtentCache::MarkClean(const ExtKey& key, uint64_t gen) {
  Shard& s = ShardFor(key);
  std::lock_guard lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end() || it->second.dirty_gen == 0 ||
      it->second.dirty_gen > gen) {
    return;
  }
  it->second.dirty_gen = 0;
  s.lru.push_front(key);
  it->second.lru_it = s.lru.begin();
  it->second.in_lru = true;
  EvictLocked(s);
}

void ExtentCache::ClearExclusive(uint64_t rid) {
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (auto& [k, n] : s.map) {
      if (k.rid == rid) n.e.exclusive = false;
    }
  }
}

void ExtentCache::DropResource(uint64_t rid) {
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (auto it = s.map.begin(); it != s.map.end();) {
      if (it->first.rid == rid && it->second.dirty_gen == 0) {
        if (it->second.in_lru) s.lru.erase(it->second.lru_it);
        it = s.map.erase(it);
      } else {
        ++it;
      }
    }
  }
}

size_t ExtentCache::size() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.map.size();
  }
  return n;
}

void ExtentCache::EvictLocked(Shard& s) {
  while (s.lru.size() > per_shard_capacity_) {
    ExtKey victim = s.lru.back();
    s.lru.pop_back();
    s.map.erase(victim);
  }
}

}  // namespace cmkfs::fs
