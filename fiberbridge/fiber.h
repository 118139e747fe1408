// A stackful fiber (Go's g without the scheduler). On Linux it switches with
// Boost.Context's fcontext (fiber.cc): a few ns per switch and no syscall
// (ucontext's swapcontext pays a sigprocmask each way). On Windows it is an
// OS fiber (fiber_win.cc: CreateFiberEx, SwitchToFiber), which keeps the
// thread's stack bounds right for SEH and the guard-page overflow check;
// Boost.Context is not built for mingw here. One class, two implementations:
// nothing above this file sees the difference. The scheduler resumes a fiber; the fiber
// suspends itself back to whoever resumed it. Its stack comes from a
// StackPool; running off the end hits the guard and is reported (see
// overflow_guard.h), never silent corruption.
//
// In sanitizer builds every switch is annotated for AddressSanitizer (stack
// bounds and fake stacks) and ThreadSanitizer (one TSan fiber per Fiber), so
// reports on fiber stacks are correct. Nothing of that is compiled otherwise.
//
// Thread safety: none. A fiber is created, resumed and destroyed on the thread
// that owns its pool; it never migrates.
#ifndef NETLOOP_FIBERBRIDGE_FIBER_H_
#define NETLOOP_FIBERBRIDGE_FIBER_H_

#if !defined(_WIN32)
#include <boost/context/fiber.hpp>
#endif

#include <cstddef>

#include "absl/functional/any_invocable.h"
#include "fiberbridge/stack_pool.h"

// Which sanitizers need switch annotations (GCC spells it one way, Clang the
// other). The member layout depends on it, so every file sees the same answer.
#if defined(__SANITIZE_ADDRESS__)
#define NETLOOP_FIBER_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define NETLOOP_FIBER_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(NETLOOP_FIBER_ASAN)
#define NETLOOP_FIBER_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(NETLOOP_FIBER_TSAN)
#define NETLOOP_FIBER_TSAN 1
#endif
#endif

namespace netloop::fiber {

class Fiber {
 public:
  // Takes a stack from `pool` and keeps `entry` to run on it at the first
  // Resume(); nothing runs yet. The pool must outlive the fiber. Heap: only
  // what `entry`'s captures need (AnyInvocable stores small ones inline), and
  // the pool's node of bookkeeping when it maps a new slab.
  Fiber(StackPool& pool, absl::AnyInvocable<void()> entry);
  // Returns the stack to the pool. The fiber must have finished or never been
  // resumed: a suspended stack is never unwound from outside (its frames may
  // own locks, buffers, registrations), so destroying one aborts with a
  // message. A stopping scheduler resumes every parked fiber it can (with a
  // Closed or Cancelled status) until it returns, and keeps the others.
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Runs the fiber until it calls Suspend() or its entry returns. From the
  // owning thread, outside this fiber (a fiber may resume another; the inner
  // one then suspends back into it). Aborts if the fiber has finished. The
  // first call on a thread also installs the overflow handler there.
  // No heap allocation.
  void Resume();
  // Inside a fiber: returns control to the Resume() that ran it, and returns
  // when the fiber is next resumed. No heap allocation.
  static void Suspend();
  // The fiber running on this thread, or nullptr on the thread's own stack.
  static Fiber* Current();

  // Whether Resume() ever ran.
  bool started() const { return started_; }
  // Whether the entry returned. Its stack is then already back in the pool.
  bool finished() const { return finished_; }
  // Usable bytes of this fiber's stack.
  size_t stack_size() const { return stack_.usable(); }
  // The stack it runs on (back in the pool once finished).
  const Stack& stack() const { return stack_; }

 private:
  StackPool* pool_;
  Stack stack_;
  absl::AnyInvocable<void()> entry_;
#if defined(_WIN32)
  // The OS fiber is stack_.os_fiber. Runs entry_ on it (fiber_win.cc).
  friend struct FiberTrampoline;
  void* caller_ = nullptr;  // the OS fiber that resumed it, while it runs
#else
  struct PoolAllocator;
  boost::context::fiber Body(boost::context::fiber&& caller);
  void Start();

  boost::context::fiber context_;  // the suspended fiber, while not running
  boost::context::fiber caller_;   // whoever resumed it, while it runs
#endif
  bool started_ = false;
  bool finished_ = false;
  // Sanitizer bookkeeping, only in sanitizer builds: each parked connection
  // pays for every byte here.
#if NETLOOP_FIBER_ASAN
  void* asan_fake_stack_ = nullptr;
  const void* caller_stack_bottom_ = nullptr;
  size_t caller_stack_size_ = 0;
#endif
#if NETLOOP_FIBER_TSAN
  void* tsan_fiber_ = nullptr;
  void* tsan_caller_ = nullptr;
#endif
};

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_FIBER_H_
