// The metadata consistency check (fsck).
#include "fsck.h"

#include <unordered_map>
#include <vector>

#include "cmkfs/record.h"
#include "records.h"

namespace cmkfs::fs {

Result<FsckReport> CheckMetadata(const MetaTxn& txn, const FsckTables& t,
                                 const FsckPool& pool, const FsckKeys& keys) {
  FsckReport rep;
  auto problem = [&](std::string s) {
    if (rep.problems.size() < 1000) rep.problems.push_back(std::move(s));
  };
  uint64_t hwm = 0;
  if (auto a = txn.Get(t.meta, "alloc"); a.ok()) {
    CMKFS_ASSIGN_OR_RETURN(hwm, DecodeCount(*a, "allocation record"));
  }
  struct Res {
    std::string label;
    uint64_t extents;
    uint64_t mapped = 0;
  };
  std::unordered_map<uint64_t, Res> res;
  {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(t.resources));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
    while (ok) {
      auto r = DecodeResource(cur->value());
      if (!r.ok()) {
        problem("unreadable resource record: " + r.status().message());
      } else {
        res[r->rid] = {std::string(ResourceDirName(r->kind)) + "/" + r->name,
                       ExtentCount(r->size)};
        ++rep.resources_checked;
        if (keys.wrapped_dek_problem) {
          if (auto why = keys.wrapped_dek_problem(r->wrapped_dek)) {
            problem(res[r->rid].label + ": " + *why +
                    "; it cannot be opened (restore the state directory "
                    "from a backup taken before the key was erased)");
          }
        }
      }
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
    }
  }
  // One counter per slot below the high-water mark: 4 bytes per 64 KiB.
  std::vector<uint32_t> refs(hwm, 0);
  {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(t.extmap));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
    while (ok) {
      ++rep.extents_checked;
      std::string_view key = cur->key();
      auto slot = DecodeSlot(cur->value());
      if (key.size() != 16 || !slot.ok()) {
        problem("malformed extent map entry");
      } else {
        uint64_t rid = *DecodeU64Key(key.substr(0, 8));
        uint64_t idx = *DecodeU64Key(key.substr(8));
        std::string where = "extent " + std::to_string(idx);
        auto it = res.find(rid);
        if (it == res.end()) {
          problem("dangling extent map entry: resource id " +
                  std::to_string(rid) + " " + where + " -> slot " +
                  std::to_string(*slot) + " belongs to no resource");
        } else {
          where = it->second.label + " " + where;
          ++it->second.mapped;
          if (idx >= it->second.extents) {
            problem(where + " lies beyond the end of the resource");
          }
        }
        if (*slot >= hwm) {
          problem(where + " maps slot " + std::to_string(*slot) +
                  " beyond the allocation high-water mark " +
                  std::to_string(hwm));
        } else {
          ++refs[*slot];
          if ((*slot + 1) * kExtentSize > pool.size) {
            problem(where + " maps slot " + std::to_string(*slot) +
                    " beyond the end of the extent pool file " + pool.path +
                    " (" + std::to_string(pool.size) +
                    " bytes): its data is missing");
          } else if (pool.slot_lost && pool.slot_lost(*slot)) {
            problem(where + " maps slot " + std::to_string(*slot) +
                    " whose data was missing from the extent pool file " +
                    pool.path + " when it was opened");
          }
        }
      }
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
    }
  }
  std::vector<uint8_t> seen(hwm, 0);  // 1: refcount entry, 2: free entry
  {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(t.refcount));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
    while (ok) {
      auto slot = DecodeU64Key(cur->key());
      auto count = DecodeCount(cur->value(), "refcount");
      if (!slot.ok() || !count.ok()) {
        problem("malformed refcount entry");
      } else if (*slot >= hwm) {
        problem("refcount entry for slot " + std::to_string(*slot) +
                " beyond the allocation high-water mark");
      } else {
        seen[*slot] |= 1;
        uint32_t c = refs[*slot];
        if (c == 0) {
          problem("leaked slot " + std::to_string(*slot) + ": refcount " +
                  std::to_string(*count) + " but no extent map references it");
        } else if (c != *count) {
          problem("refcount mismatch on slot " + std::to_string(*slot) +
                  ": recorded " + std::to_string(*count) + ", referenced " +
                  std::to_string(c) + " times");
        }
      }
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
    }
  }
  {
    CMKFS_ASSIGN_OR_RETURN(auto cur, txn.Scan(t.free));
    CMKFS_ASSIGN_OR_RETURN(bool ok, cur->First());
    while (ok) {
      auto slot = DecodeU64Key(cur->key());
      if (!slot.ok()) {
        problem("malformed free-list entry");
      } else if (*slot >= hwm) {
        problem("free-list entry for slot " + std::to_string(*slot) +
                " beyond the allocation high-water mark");
      } else {
        seen[*slot] |= 2;
        if (seen[*slot] & 1) {
          problem("slot " + std::to_string(*slot) +
                  " is both allocated and on the free list");
        }
      }
      CMKFS_ASSIGN_OR_RETURN(ok, cur->Next());
    }
  }
  for (uint64_t s = 0; s < hwm; ++s) {
    if (refs[s] > 0 && !(seen[s] & 1)) {
      problem("slot " + std::to_string(s) + " is referenced " +
              std::to_string(refs[s]) + " times but has no refcount");
    }
    if (refs[s] > 0 && (seen[s] & 2)) {
      problem("slot " + std::to_string(s) +
              " is referenced but on the free list");
    }
    if (refs[s] == 0 && seen[s] == 0) {
      problem("leaked slot " + std::to_string(s) +
              ": neither referenced nor on the free list");
    }
  }
  for (const auto& [rid, r] : res) {
    uint64_t recorded = 0;
    if (auto v = txn.Get(t.counts, EncodeU64Key(rid)); v.ok()) {
      CMKFS_ASSIGN_OR_RETURN(recorded, DecodeCount(*v, "extent count"));
    }
    if (recorded != r.mapped) {
      problem(r.label + ": extent count records " + std::to_string(recorded) +
              " but the map holds " + std::to_string(r.mapped));
    }
  }
  return rep;
}

}  // namespace cmkfs::fs
