// RingBuffer: the per-connection byte FIFO. Throughput of the paths a
// connection takes (append, peek, discard; writev and readv iovecs), and the
// allocations they make once the buffer has grown: the counter replaces the
// global operator new, so "allocs/op" must read 0 in every steady state.
#include <sys/uio.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "bench/alloc_counter.h"
#include "benchmark/benchmark.h"
#include "reactor/ring_buffer.h"

namespace netloop {
namespace {

void ReportAllocs(benchmark::State& state, uint64_t before) {
  state.counters["allocs/op"] = benchmark::Counter(
      static_cast<double>(bench::Allocations() - before), benchmark::Counter::kAvgIterations);
}

// One message in, looked at, and consumed: the buffer is empty between
// messages, so every message starts at offset 0.
void BM_AppendPeekDiscard(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  const std::string msg(size, 'x');
  RingBuffer rb;
  rb.Append(msg);  // the only allocation
  rb.Discard(size);
  const uint64_t before = bench::Allocations();
  for (auto _ : state) {
    rb.Append(msg);
    RingBuffer::Views v = rb.Peek(size);
    benchmark::DoNotOptimize(v.first.data());
    benchmark::DoNotOptimize(v.second.data());
    rb.Discard(size);
  }
  ReportAllocs(state, before);  // first: adding counters allocates
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}
BENCHMARK(BM_AppendPeekDiscard)->Arg(64)->Arg(1024);

// A standing backlog of a few messages, so the data keeps wrapping around
// the end of the storage: the steady state of a connection whose peer reads
// slower than it is written to.
void BM_AppendPeekDiscardWithBacklog(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  const std::string msg(size, 'y');
  RingBuffer rb;
  for (int i = 0; i < 5; ++i) rb.Append(msg);
  const uint64_t before = bench::Allocations();
  size_t wrapped = 0;
  for (auto _ : state) {
    rb.Append(msg);
    RingBuffer::Views v = rb.Peek(size);
    wrapped += !v.second.empty();
    benchmark::DoNotOptimize(v.first.data());
    rb.Discard(size);
  }
  ReportAllocs(state, before);  // first: adding counters allocates
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
  // Share of messages that straddled the end of the storage.
  state.counters["wrapped"] = benchmark::Counter(static_cast<double>(wrapped),
                                                 benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_AppendPeekDiscardWithBacklog)->Arg(100)->Arg(1000);

// The outbound path: Append, ReadableIovecs (what writev would take), then
// Discard what "the socket accepted", half a message at a time.
void BM_WritevPath(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  const std::string msg(size, 'w');
  RingBuffer rb;
  rb.Append(msg);
  rb.Append(msg);  // warm: grow to the loop's peak of two messages
  rb.Discard(size);
  const uint64_t before = bench::Allocations();
  for (auto _ : state) {
    rb.Append(msg);
    iovec iov[2];
    int n = rb.ReadableIovecs(iov);
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(iov[0].iov_base);
    rb.Discard(size);
  }
  ReportAllocs(state, before);  // first: adding counters allocates
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}
BENCHMARK(BM_WritevPath)->Arg(1024);

// The inbound path: WritableIovecs (what readv would fill), a memcpy standing
// in for the kernel, Commit, then MakeContiguous of the message for a parser
// and Discard.
void BM_ReadvPathWithMakeContiguous(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  const std::string msg(size, 'r');
  RingBuffer rb;
  rb.Append(std::string(size / 3, 'r'));  // stagger so messages straddle the wrap
  {
    iovec warm[2];
    rb.WritableIovecs(warm, size);  // warm: grow to the loop's peak
  }
  const uint64_t before = bench::Allocations();
  for (auto _ : state) {
    iovec iov[2];
    int n = rb.WritableIovecs(iov, size);
    size_t first = std::min(size, iov[0].iov_len);
    std::memcpy(iov[0].iov_base, msg.data(), first);
    if (n == 2 && first < size) std::memcpy(iov[1].iov_base, msg.data() + first, size - first);
    rb.Commit(size);
    benchmark::DoNotOptimize(rb.MakeContiguous(size).data());
    rb.Discard(size);
  }
  ReportAllocs(state, before);  // first: adding counters allocates
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}
BENCHMARK(BM_ReadvPathWithMakeContiguous)->Arg(64)->Arg(1000);

}  // namespace
}  // namespace netloop

BENCHMARK_MAIN();
