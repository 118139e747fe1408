// A stackful fiber on Boost.Context's fcontext switch (a few ns per switch;
// never ucontext, whose sigprocmask syscall costs ~270 ns here). The
// scheduler resumes a fiber; the fiber suspends itself back to whoever
// resumed it. Stacks come from a StackPool; overflowing one hits its guard page
// and is reported (see overflow_guard.h), never silent corruption.
//
// Switches are annotated for AddressSanitizer and ThreadSanitizer when those
// are on, so sanitizer builds see fiber stacks correctly.
//
// Not thread-safe: a fiber is resumed by the thread that owns its pool.
#ifndef NETLOOP_FIBERBRIDGE_FIBER_H_
#define NETLOOP_FIBERBRIDGE_FIBER_H_

#include <boost/context/fiber.hpp>

#include <cstddef>

#include "absl/functional/any_invocable.h"
#include "fiberbridge/stack_pool.h"

namespace netloop::fiber {

class Fiber {
 public:
  // Prepares a fiber that runs `entry` on a stack from `pool` when first
  // resumed. The pool must outlive the fiber.
  Fiber(StackPool& pool, absl::AnyInvocable<void()> entry);
  // A fiber must have finished (or never started): unwinding a suspended
  // stack from outside is not supported, so the scheduler always resumes
  // parked fibers until they return.
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Runs the fiber until it suspends or finishes. Not from inside itself.
  void Resume();
  // Inside a fiber: returns control to the Resume() that ran it.
  static void Suspend();
  // The fiber running on this thread, or nullptr.
  static Fiber* Current();

  bool finished() const { return finished_; }
  bool started() const { return started_; }
  size_t stack_size() const { return stack_.usable(); }

 private:
  struct PoolAllocator;
  boost::context::fiber Body(boost::context::fiber&& caller);

  StackPool* pool_;
  Stack stack_;
  absl::AnyInvocable<void()> entry_;
  boost::context::fiber context_;  // the fiber, while it is not running
  boost::context::fiber caller_;   // whoever resumed it, while it runs
  bool started_ = false;
  bool finished_ = false;
  // Sanitizer bookkeeping, only in sanitizer builds: every byte here is paid
  // by each parked connection.
#if defined(__SANITIZE_ADDRESS__)
  void* asan_fake_stack_ = nullptr;
  const void* caller_stack_bottom_ = nullptr;
  size_t caller_stack_size_ = 0;
#endif
#if defined(__SANITIZE_THREAD__)
  void* tsan_fiber_ = nullptr;
  void* tsan_caller_ = nullptr;
#endif
};

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_FIBER_H_
