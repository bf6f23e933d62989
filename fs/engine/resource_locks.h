// Per-resource locks of the engine's control plane. Open, Seal, Unseal,
// Resize, each step of a re-wrap and every other change of one resource's
// record hold that resource (kind and name) while they read, change and
// write it, so that a long operation on some resources (a re-wrap of every
// disk of a DES) never stalls one on another resource.
#pragma once

#include <string>
#include <string_view>
#include <unordered_set>

#include "cmkfs/engine.h"
#include "cmkfs/mutex.h"

namespace cmkfs::fs {

class ResourceLocks {
 public:
  // Holds one resource from construction (ResourceLocks::Lock) to
  // destruction. Move-only; a moved-from Hold holds nothing.
  class Hold {
   public:
    Hold(Hold&& other) noexcept;
    Hold& operator=(Hold&&) = delete;
    Hold(const Hold&) = delete;
    ~Hold();

   private:
    friend class ResourceLocks;
    Hold(ResourceLocks* locks, std::string key)
        : locks_(locks), key_(std::move(key)) {}
    ResourceLocks* locks_;
    std::string key_;
  };

  // Blocks until no other Hold of (kind, name) lives, then holds it. Not
  // reentrant: a thread must not ask for a resource it holds, nor for two
  // at once (the engine never does). Thread-safe.
  [[nodiscard]] Hold Lock(ResourceKind kind, std::string_view name)
      EXCLUDES(mu_);
  // Whether some thread holds (kind, name) now (tests).
  bool IsHeld(ResourceKind kind, std::string_view name) EXCLUDES(mu_);

 private:
  void Release(const std::string& key) EXCLUDES(mu_);

  Mutex mu_;  // a leaf: held only inside Lock and Release
  CondVar released_;
  std::unordered_set<std::string> held_ GUARDED_BY(mu_);
};

}  // namespace cmkfs::fs
