// The stores below a thin volume for a test: an LMDB metadata store in a
// temporary directory, the pool file in memory (tests/support), the slot
// pool and the extent map over them, as the engine builds them.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cmkfs/meta_store.h"
#include "extent_map.h"
#include "layers.h"
#include "slot_pool.h"
#include "support/memory_io_layer.h"

namespace cmkfs::fs {

struct ThinStores {
  ThinStores() {
    std::string tmpl =
        (std::filesystem::path(::testing::TempDir()) / "cmkfs-volume-XXXXXX")
            .string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir = tmpl;
    Open(/*hwm=*/0);
  }
  ~ThinStores() {
    map.reset();
    slots.reset();
    meta.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  // (Re)builds the pool, the cache and the map over the same metadata and
  // file, as an engine reopening its state does.
  void Open(uint64_t hwm) {
    map.reset();
    slots.reset();
    cache = std::make_unique<ExtentCache>(1 << 20);
    if (!meta) {
      LmdbMetaStoreOptions mo;
      mo.sync_on_commit = false;
      auto m = OpenLmdbMetaStore(dir / "meta", mo);
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      meta = std::move(*m);
      for (auto [t, name] : {std::pair{&tables.map, "extmap"},
                             {&tables.ref, "refcount"},
                             {&tables.count, "counts"},
                             {&free_table, "free"},
                             {&meta_table, "meta"}}) {
        auto h = meta->OpenTable(name);
        ASSERT_TRUE(h.ok());
        *t = *h;
      }
      auto f = io->Open(dir / "pool.0");
      ASSERT_TRUE(f.ok());
      file = *f;
    }
    SlotPoolOptions o;
    o.pool_path = dir / "pool.0";
    o.backing_dir = dir;
    o.backing_reserve_bytes = 1;  // the test's filesystem is never "full"
    o.free_table = free_table;
    o.meta_table = meta_table;
    o.hwm = hwm;
    auto size = file->Size();
    ASSERT_TRUE(size.ok());
    o.file_size = *size;
    slots = std::make_unique<SlotPool>(file, meta.get(), std::move(o));
    map = std::make_unique<ExtentMap>(meta.get(), tables, slots.get(),
                                      cache.get(),
                                      std::span<SharedMutex>(stripes), nullptr);
  }

  // A thin volume of resource `rid`, `size` bytes.
  std::shared_ptr<Volume> Thin(uint64_t rid, uint64_t size,
                               ZeroFill fill = nullptr) {
    ThinSpec spec;
    spec.rid = rid;
    spec.name = "thin" + std::to_string(rid);
    spec.size = std::make_shared<std::atomic<uint64_t>>(size);
    spec.fill = std::move(fill);
    return NewThinVolume(map.get(), std::move(spec));
  }

  std::filesystem::path dir;
  std::shared_ptr<IoLayer> io = NewMemoryIoLayer();
  std::shared_ptr<IoFile> file;
  std::unique_ptr<MetaStore> meta;
  ExtentTables tables;
  MetaTable free_table = 0, meta_table = 0;
  std::unique_ptr<ExtentCache> cache;
  std::vector<SharedMutex> stripes = std::vector<SharedMutex>(64);
  std::unique_ptr<SlotPool> slots;
  std::unique_ptr<ExtentMap> map;
};

}  // namespace cmkfs::fs
