#include "fiberbridge/fiber.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <utility>

#include "fiberbridge/overflow_guard.h"

#if NETLOOP_FIBER_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#if NETLOOP_FIBER_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace netloop::fiber {
namespace {

// initial-exec: see overflow_guard.h.
thread_local Fiber* current_fiber __attribute__((tls_model("initial-exec"))) = nullptr;

[[noreturn]] __attribute__((cold, noinline)) void Die(const char* msg) {
  ssize_t ignored = write(STDERR_FILENO, msg, __builtin_strlen(msg));
  (void)ignored;
  std::abort();
}

}  // namespace

// Hands Boost the stack the Fiber took from its pool, and gives it back once
// Boost is done with it: after the entry returned, on the resumer's stack.
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
    : pool_(&pool), stack_(pool.Allocate()), entry_(std::move(entry)) {}

Fiber::~Fiber() {
  if (!started_) {
    // The Boost context is built by the first Resume, so nothing ran on the
    // stack and it goes straight back.
    pool_->Release(stack_);
    return;
  }
  if (!finished_) Die("netloop: destroying a suspended fiber (resume it until it returns)\n");
#if NETLOOP_FIBER_TSAN
  __tsan_destroy_fiber(tsan_fiber_);
#endif
}

void Fiber::Start() {
  started_ = true;
#if NETLOOP_FIBER_TSAN
  tsan_fiber_ = __tsan_create_fiber(0);
  __tsan_set_fiber_name(tsan_fiber_, "netloop fiber");
#endif
}

boost::context::fiber Fiber::Body(boost::context::fiber&& caller) {
  caller_ = std::move(caller);
#if NETLOOP_FIBER_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &caller_stack_bottom_, &caller_stack_size_);
#endif
  try {
    entry_();
  } catch (const boost::context::detail::forced_unwind&) {
    throw;  // Boost's own unwinding; cannot happen while ~Fiber forbids it
  } catch (const std::exception& e) {
    std::fprintf(stderr, "netloop: exception escaped a fiber: %s\n", e.what());
    std::terminate();
  } catch (...) {
    std::fprintf(stderr, "netloop: exception escaped a fiber (not a std::exception)\n");
    std::terminate();
  }
  entry_ = nullptr;  // captures die here, on the fiber, before the stack goes
  finished_ = true;
#if NETLOOP_FIBER_ASAN
  // nullptr: this stack is finished, ASan may drop its fake frames.
  __sanitizer_start_switch_fiber(nullptr, caller_stack_bottom_, caller_stack_size_);
#endif
  // No TSan switch here: Body and the Boost frames below it still return on
  // this fiber, and TSan pops each returning frame from the shadow call stack
  // of whichever fiber it thinks is current. Switching first made every
  // finished fiber pop frames its resumer never pushed, until the loop
  // thread's shadow stack underflowed (a SEGV inside TSan after a few
  // fibers). Resume switches back once it is back on the resumer's side.
  return std::move(caller_);
}

void Fiber::Resume() {
  if (finished_ || current_fiber == this) [[unlikely]] {
    Die("netloop: Fiber::Resume on a finished or running fiber\n");
  }
  InstallOverflowHandlerForThisThread();
  Fiber* const previous = current_fiber;
  current_fiber = this;
  SetRunningStack(&stack_);
  const bool first = !started_;
  if (first) [[unlikely]] Start();
#if NETLOOP_FIBER_TSAN
  tsan_caller_ = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(tsan_fiber_, 0);
#endif
#if NETLOOP_FIBER_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, stack_.usable_bottom(), stack_.usable());
#endif
  if (first) [[unlikely]] {
    // Building the Boost context switches onto the new stack and straight back
    // (Boost parks its entry frame there). Done here rather than in the
    // constructor, a fiber that never runs never touches its stack (nor needs
    // Boost's forced unwinding to be destroyed), and the sanitizers see that
    // switch inside the annotated first one.
    context_ = boost::context::fiber(
        std::allocator_arg, PoolAllocator{pool_, stack_},
        [this](boost::context::fiber&& caller) { return Body(std::move(caller)); });
  }
  context_ = std::move(context_).resume();
#if NETLOOP_FIBER_TSAN
  // A suspending fiber switched TSan back itself (Suspend); a finished one
  // leaves it to us (see Body).
  if (finished_) __tsan_switch_to_fiber(tsan_caller_, 0);
#endif
#if NETLOOP_FIBER_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
  current_fiber = previous;
  SetRunningStack(previous != nullptr ? &previous->stack_ : nullptr);
}

void Fiber::Suspend() {
  Fiber* const self = current_fiber;
  if (self == nullptr) [[unlikely]] Die("netloop: Fiber::Suspend outside a fiber\n");
#if NETLOOP_FIBER_ASAN
  __sanitizer_start_switch_fiber(&self->asan_fake_stack_, self->caller_stack_bottom_,
                                 self->caller_stack_size_);
#endif
#if NETLOOP_FIBER_TSAN
  __tsan_switch_to_fiber(self->tsan_caller_, 0);
#endif
  self->caller_ = std::move(self->caller_).resume();
#if NETLOOP_FIBER_ASAN
  // The resumer may differ from last time (another fiber nesting us).
  __sanitizer_finish_switch_fiber(self->asan_fake_stack_, &self->caller_stack_bottom_,
                                  &self->caller_stack_size_);
#endif
}

Fiber* Fiber::Current() { return current_fiber; }

}  // namespace netloop::fiber
