// Outbound storage a completion backend keeps alive for a send in flight
// (engine internal). When a stream's outbound ring moves or releases a block
// while a submitted send still points into it, the backend takes the block
// (Backend::RetainUntilSent) and frees it once that stream's send has
// completed. io_uring and IOCP share this. Loop thread only.
#ifndef NETLOOP_REACTOR_INTERNAL_RETAINED_BLOCKS_H_
#define NETLOOP_REACTOR_INTERNAL_RETAINED_BLOCKS_H_

#include <new>
#include <utility>
#include <vector>

namespace netloop::internal {

class Stream;

class RetainedBlocks {
 public:
  RetainedBlocks() = default;
  RetainedBlocks(const RetainedBlocks&) = delete;
  RetainedBlocks& operator=(const RetainedBlocks&) = delete;
  // Blocks still kept when the backend goes (its sends are over by then).
  ~RetainedBlocks() {
    for (auto& [owner, block] : blocks_) ::operator delete(block);
  }

  // Keeps `block` (from ::operator new) until FreeFor(owner).
  void Keep(const Stream* owner, void* block) { blocks_.emplace_back(owner, block); }

  // The owner's send completed: frees what was kept for it.
  void FreeFor(const Stream* owner) {
    if (blocks_.empty()) return;
    size_t kept = 0;
    for (auto& [o, block] : blocks_) {
      if (o == owner) {
        ::operator delete(block);
      } else {
        blocks_[kept++] = {o, block};
      }
    }
    blocks_.resize(kept);
  }

 private:
  std::vector<std::pair<const Stream*, void*>> blocks_;
};

}  // namespace netloop::internal

#endif  // NETLOOP_REACTOR_INTERNAL_RETAINED_BLOCKS_H_
