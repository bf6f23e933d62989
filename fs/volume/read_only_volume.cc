// The read-only layer: snapshots, images and disks opened read-only.
#include "layers.h"

namespace cmkfs::fs {
namespace {

class ReadOnlyVolume : public Volume {
 public:
  ReadOnlyVolume(std::shared_ptr<Volume> lower, std::string name)
      : lower_(std::move(lower)), name_(std::move(name)) {}

  uint64_t Size() const override { return lower_->Size(); }
  uint64_t alignment() const override { return lower_->alignment(); }
  Status Read(uint64_t offset, std::span<uint8_t> buf,
              HoleMap* holes) override {
    return lower_->Read(offset, buf, holes);
  }
  Status Write(uint64_t, std::span<const uint8_t>) override { return Refuse(); }
  Status Zero(uint64_t, uint64_t, bool) override { return Refuse(); }
  Result<BlockRun> BlockStatus(uint64_t offset, uint64_t length) override {
    return lower_->BlockStatus(offset, length);
  }
  Status Flush() override { return lower_->Flush(); }

 private:
  Status Refuse() const { return ReadOnlyError(name_ + " is open read-only"); }

  const std::shared_ptr<Volume> lower_;
  const std::string name_;
};

}  // namespace

std::unique_ptr<Volume> NewReadOnlyVolume(std::shared_ptr<Volume> lower,
                                          std::string name) {
  return std::make_unique<ReadOnlyVolume>(std::move(lower), std::move(name));
}

}  // namespace cmkfs::fs
