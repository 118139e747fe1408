// Fiber on Windows: an OS fiber (CreateFiberEx, SwitchToFiber) per stack.
//
// SwitchToFiber saves and restores the registers and the thread's stack
// bounds in the TEB, so SEH unwinding (C++ exceptions on mingw-w64) and the
// guard-page overflow check see the fiber's own stack. Its cost is a few
// dozen instructions in user mode, no syscall.
//
// An OS fiber's routine must never return (that ends the thread), so the
// routine is a loop: run the entry of whichever Fiber was resumed onto it,
// mark it finished, switch back to its resumer. The pool keeps finished OS
// fibers (stack_pool_win.cc), and the next Fiber that takes one from it
// resumes that loop at its next turn.
#include "fiberbridge/fiber.h"

#include "fiberbridge/internal/lean_windows.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <utility>

#include "fiberbridge/overflow_guard.h"

namespace netloop::fiber {
namespace {

thread_local Fiber* current_fiber = nullptr;

[[noreturn]] __attribute__((cold, noinline)) void Die(const char* msg) {
  DWORD written = 0;
  WriteFile(GetStdHandle(STD_ERROR_HANDLE), msg, static_cast<DWORD>(__builtin_strlen(msg)),
            &written, nullptr);
  std::abort();
}

// Converts the thread to a fiber for as long as it lives, so that it can
// switch to others; undone at thread exit.
struct ThreadFiber {
  void* fiber = nullptr;
  bool converted = false;
  ~ThreadFiber() {
    if (converted) ConvertFiberToThread();
  }
};
thread_local ThreadFiber thread_fiber;

// The OS fiber running now: the thread's own (converted on first use), or
// another fiber's when one resumes another.
void* RunningOsFiber() {
  if (thread_fiber.fiber != nullptr) return GetCurrentFiber();
  if (IsThreadAFiber()) {
    // Converted by someone else (the thread's owner): theirs to undo.
    thread_fiber.fiber = GetCurrentFiber();
    return thread_fiber.fiber;
  }
  thread_fiber.fiber = ConvertThreadToFiberEx(nullptr, FIBER_FLAG_FLOAT_SWITCH);
  if (thread_fiber.fiber == nullptr) Die("netloop: ConvertThreadToFiberEx failed\n");
  thread_fiber.converted = true;
  return thread_fiber.fiber;
}

}  // namespace

struct FiberTrampoline {
  static void WINAPI Run(void*) {
    for (;;) {
      Fiber* const f = current_fiber;
      try {
        f->entry_();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "netloop: exception escaped a fiber: %s\n", e.what());
        std::terminate();
      } catch (...) {
        std::fprintf(stderr, "netloop: exception escaped a fiber (not a std::exception)\n");
        std::terminate();
      }
      f->entry_ = nullptr;  // captures die here, on the fiber
      f->finished_ = true;
      // Back to the resumer, which gives this OS fiber back to the pool. It
      // comes back here only when another Fiber is started on it.
      SwitchToFiber(f->caller_);
    }
  }
};

Fiber::Fiber(StackPool& pool, absl::AnyInvocable<void()> entry)
    : pool_(&pool), stack_(pool.Allocate()), entry_(std::move(entry)) {}

Fiber::~Fiber() {
  if (!started_) {
    pool_->Release(stack_);
    return;
  }
  if (!finished_) Die("netloop: destroying a suspended fiber (resume it until it returns)\n");
}

void Fiber::Resume() {
  if (finished_ || current_fiber == this) [[unlikely]] {
    Die("netloop: Fiber::Resume on a finished or running fiber\n");
  }
  InstallOverflowHandlerForThisThread();
  caller_ = RunningOsFiber();
  if (!started_) [[unlikely]] {
    started_ = true;
    if (stack_.os_fiber == nullptr) {
      // Reserve the whole stack, commit as it grows (the default commit).
      stack_.os_fiber = CreateFiberEx(0, stack_.usable(), FIBER_FLAG_FLOAT_SWITCH,
                                      &FiberTrampoline::Run, nullptr);
      if (stack_.os_fiber == nullptr) Die("netloop: CreateFiberEx failed (address space?)\n");
    }
  }
  Fiber* const previous = current_fiber;
  current_fiber = this;
  SetRunningStack(&stack_);
  SwitchToFiber(stack_.os_fiber);
  current_fiber = previous;
  SetRunningStack(previous != nullptr ? &previous->stack_ : nullptr);
  if (finished_) pool_->Release(stack_);
}

void Fiber::Suspend() {
  Fiber* const self = current_fiber;
  if (self == nullptr) [[unlikely]] Die("netloop: Fiber::Suspend outside a fiber\n");
  SwitchToFiber(self->caller_);
}

Fiber* Fiber::Current() { return current_fiber; }

}  // namespace netloop::fiber
