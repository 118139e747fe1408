// Go's bounded channel for fibers: Send parks while the buffer is full, Recv
// parks while it is empty, Close wakes everyone. Works between fibers on one
// loop and across loops. Capacity 0 is a rendezvous (unbuffered) channel.
//
// Thread rules: blocking calls (Send, Recv) from fibers only; Close and the
// Try* calls from any thread. The channel must outlive every fiber parked in
// it.
//
// At the stop deadline of the waiting fiber's scheduler (see scheduler.h), a
// Send or Recv that is parked, or would park, returns StopDeadlineError()
// (Cancelled); ones that can complete at once still do.
#ifndef NETLOOP_FIBERBRIDGE_CHANNEL_H_
#define NETLOOP_FIBERBRIDGE_CHANNEL_H_

#include <cassert>
#include <cstddef>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fiberbridge/waiter_list.h"
#include "reactor/errors.h"

namespace netloop::fiber {

template <typename T>
class Channel {
 public:
  explicit Channel(size_t capacity) : capacity_(capacity), ring_(capacity) {}
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Parks until there is room (or a receiver). Closed error once closed.
  absl::Status Send(T value) {
    std::unique_lock<std::mutex> lock(mu_);
    if (closed_) return ClosedError("send on closed channel");
    if (HandToReceiver(value, lock)) return absl::OkStatus();
    if (size_ < capacity_) {
      PushRing(std::move(value));
      return absl::OkStatus();
    }
    SendNode node;
    node.waiter.task = Scheduler::CurrentTask();
    assert(node.waiter.task != nullptr && "Channel::Send would block outside a fiber");
    node.value = &value;
    sends_.Push(&node.waiter);
    lock.unlock();
    if (!internal::ParkCurrentAbortable(mu_, sends_, node.waiter)) return StopDeadlineError();
    // Woken either because a receiver took the value (done) or by Close.
    return node.waiter.done ? absl::OkStatus() : ClosedError("send on closed channel");
  }

  // Parks until a value arrives. Closed error once closed and drained.
  absl::StatusOr<T> Recv() {
    std::unique_lock<std::mutex> lock(mu_);
    if (std::optional<T> v = TakeLocked(lock)) return std::move(*v);
    if (closed_) return ClosedError("channel closed");
    RecvNode node;
    node.waiter.task = Scheduler::CurrentTask();
    assert(node.waiter.task != nullptr && "Channel::Recv would block outside a fiber");
    recvs_.Push(&node.waiter);
    lock.unlock();
    if (!internal::ParkCurrentAbortable(mu_, recvs_, node.waiter)) return StopDeadlineError();
    if (node.value.has_value()) return std::move(*node.value);
    return ClosedError("channel closed");
  }

  // Non-blocking variants; any thread.
  bool TrySend(T& value) {
    std::unique_lock<std::mutex> lock(mu_);
    if (closed_) return false;
    if (HandToReceiver(value, lock)) return true;
    if (size_ >= capacity_) return false;
    PushRing(std::move(value));
    return true;
  }
  std::optional<T> TryRecv() {
    std::unique_lock<std::mutex> lock(mu_);
    return TakeLocked(lock);
  }

  // Wakes every parked sender (Closed) and receiver (Closed once drained).
  void Close() {
    internal::WaiterList sends, recvs;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      closed_ = true;
      sends = sends_;
      recvs = recvs_;
      sends_ = internal::WaiterList();
      recvs_ = internal::WaiterList();
    }
    internal::WakeAll(sends);
    internal::WakeAll(recvs);
  }

  size_t capacity() const { return capacity_; }

 private:
  struct SendNode {
    internal::Waiter waiter;  // first member: Waiter* converts back
    T* value = nullptr;
  };
  struct RecvNode {
    internal::Waiter waiter;
    std::optional<T> value;
  };

  RecvNode* PopRecv() { return reinterpret_cast<RecvNode*>(recvs_.Pop()); }
  SendNode* PopSend() { return reinterpret_cast<SendNode*>(sends_.Pop()); }

  void PushRing(T value) {
    ring_[(head_ + size_) % capacity_].emplace(std::move(value));
    ++size_;
  }

  // Takes a value from the buffer (refilling it from a parked sender) or,
  // unbuffered, straight from a parked sender. Wakes that sender.
  std::optional<T> TakeLocked(std::unique_lock<std::mutex>& lock) {
    std::optional<T> out;
    if (size_ > 0) {
      out.emplace(std::move(*ring_[head_]));
      ring_[head_].reset();
      head_ = (head_ + 1) % capacity_;
      --size_;
      if (SendNode* s = PopSend()) {
        PushRing(std::move(*s->value));
        FinishSend(s, lock);
      }
      return out;
    }
    if (SendNode* s = PopSend()) {
      out.emplace(std::move(*s->value));
      FinishSend(s, lock);
    }
    return out;
  }

  void FinishSend(SendNode* s, std::unique_lock<std::mutex>& lock) {
    FiberTask* task = s->waiter.task;
    s->waiter.done = true;
    lock.unlock();
    Scheduler::WakeFromAnyThread(task);
    lock.lock();
  }

  // Gives `value` straight to a parked receiver, if any (unlocking to wake
  // it). Returns whether it did.
  bool HandToReceiver(T& value, std::unique_lock<std::mutex>& lock) {
    RecvNode* r = PopRecv();
    if (r == nullptr) return false;
    r->value.emplace(std::move(value));
    FiberTask* task = r->waiter.task;
    r->waiter.done = true;
    lock.unlock();
    Scheduler::WakeFromAnyThread(task);
    return true;
  }

  const size_t capacity_;
  std::mutex mu_;
  std::vector<std::optional<T>> ring_;
  size_t head_ = 0;
  size_t size_ = 0;
  bool closed_ = false;
  internal::WaiterList sends_;
  internal::WaiterList recvs_;
};

}  // namespace netloop::fiber

#endif  // NETLOOP_FIBERBRIDGE_CHANNEL_H_
