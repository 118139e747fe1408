#include "fiberbridge/fiber.h"

#include <cassert>
#include <cstdio>
#include <exception>
#include <memory>
#include <utility>

#include "fiberbridge/overflow_guard.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define NETLOOP_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define NETLOOP_TSAN 1
#endif

namespace netloop::fiber {
namespace {
thread_local Fiber* current_fiber = nullptr;
}  // namespace

// Hands Boost the stack the Fiber already took from its pool, and gives it
// back when Boost is done with it (after the fiber function returned).
struct Fiber::PoolAllocator {
  StackPool* pool;
  Stack stack;
  boost::context::stack_context allocate() {
    boost::context::stack_context sc;
    sc.sp = stack.top();
    sc.size = stack.usable();
    return sc;
  }
  void deallocate(boost::context::stack_context&) noexcept { pool->Release(stack); }
};

Fiber::Fiber(StackPool& pool, absl::AnyInvocable<void()> entry)
    : pool_(&pool), stack_(pool.Allocate()), entry_(std::move(entry)) {
  context_ = boost::context::fiber(
      std::allocator_arg, PoolAllocator{pool_, stack_},
      [this](boost::context::fiber&& caller) { return Body(std::move(caller)); });
#if NETLOOP_TSAN
  tsan_fiber_ = __tsan_create_fiber(0);
#endif
}

Fiber::~Fiber() {
  assert((finished_ || !started_) && "destroying a suspended fiber");
#if NETLOOP_TSAN
  if (tsan_fiber_ != nullptr) __tsan_destroy_fiber(tsan_fiber_);
#endif
  // A never-started fiber's context unwinds harmlessly (its body never runs)
  // and returns the stack through PoolAllocator.
}

boost::context::fiber Fiber::Body(boost::context::fiber&& caller) {
  caller_ = std::move(caller);
#if NETLOOP_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &caller_stack_bottom_, &caller_stack_size_);
#endif
  try {
    entry_();
  } catch (const boost::context::detail::forced_unwind&) {
    throw;  // Boost's own unwinding of a destroyed context
  } catch (const std::exception& e) {
    std::fprintf(stderr, "netloop: exception escaped a fiber: %s\n", e.what());
    std::terminate();
  } catch (...) {
    std::fprintf(stderr, "netloop: unknown exception escaped a fiber\n");
    std::terminate();
  }
  entry_ = nullptr;
  finished_ = true;
#if NETLOOP_ASAN
  // nullptr: this stack is going away.
  __sanitizer_start_switch_fiber(nullptr, caller_stack_bottom_, caller_stack_size_);
#endif
#if NETLOOP_TSAN
  __tsan_switch_to_fiber(tsan_caller_, 0);
#endif
  return std::move(caller_);
}

void Fiber::Resume() {
  assert(!finished_ && current_fiber != this);
  InstallOverflowGuardForThisThread();
  Fiber* previous = current_fiber;
  current_fiber = this;
  started_ = true;
  SetCurrentGuard(stack_.base, stack_.guard, stack_.usable());
#if NETLOOP_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, stack_.usable_bottom(), stack_.usable());
#endif
#if NETLOOP_TSAN
  tsan_caller_ = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(tsan_fiber_, 0);
#endif
  context_ = std::move(context_).resume();
#if NETLOOP_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  current_fiber = previous;
  if (previous != nullptr) {
    SetCurrentGuard(previous->stack_.base, previous->stack_.guard, previous->stack_.usable());
  } else {
    SetCurrentGuard(nullptr, 0, 0);
  }
}

void Fiber::Suspend() {
  Fiber* self = current_fiber;
  assert(self != nullptr && "Fiber::Suspend outside a fiber");
#if NETLOOP_ASAN
  __sanitizer_start_switch_fiber(&self->asan_fake_stack_, self->caller_stack_bottom_,
                                 self->caller_stack_size_);
#endif
#if NETLOOP_TSAN
  __tsan_switch_to_fiber(self->tsan_caller_, 0);
#endif
  self->caller_ = std::move(self->caller_).resume();
#if NETLOOP_ASAN
  __sanitizer_finish_switch_fiber(self->asan_fake_stack_, &self->caller_stack_bottom_,
                                  &self->caller_stack_size_);
#endif
}

Fiber* Fiber::Current() { return current_fiber; }

}  // namespace netloop::fiber
