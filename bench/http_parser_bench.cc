// The HTTP core alone, without sockets: parsing TechEmpower's plaintext
// request, and a session answering a pipelined batch of 16 of them (what wrk
// sends in the plaintext test), with heap allocations per request.
#include <string>

#include "bench/alloc_counter.h"
#include "benchmark/benchmark.h"
#include "examples/http/http_date.h"
#include "examples/http/http_parser.h"
#include "examples/http/http_session.h"

namespace netloop::http {
namespace {

// The request wrk's pipeline script sends in TechEmpower's plaintext test.
constexpr std::string_view kPlaintext =
    "GET /plaintext HTTP/1.1\r\n"
    "Host: tfb-server:8080\r\n"
    "Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,"
    "application/xml;q=0.8,*/*;q=0.7\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

void SetAllocCounter(benchmark::State& state, uint64_t since, int64_t requests) {
  state.counters["allocs/req"] =
      benchmark::Counter(static_cast<double>(bench::Allocations() - since) /
                         static_cast<double>(requests > 0 ? requests : 1));
}

void BM_ParsePlaintextRequest(benchmark::State& state) {
  RequestParser parser;
  Request req;
  const uint64_t allocs = bench::Allocations();
  for (auto _ : state) {
    size_t used = 0;
    RequestParser::Result r = parser.Parse(kPlaintext, &req, &used);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(req.header_count);
  }
  if (req.target != "/plaintext") state.SkipWithError("did not parse");
  SetAllocCounter(state, allocs, state.iterations());
  state.SetBytesProcessed(state.iterations() * kPlaintext.size());
}
BENCHMARK(BM_ParsePlaintextRequest);

// Parsing with the request dripped in two halves: the resumed scan's cost.
void BM_ParsePlaintextRequestInTwoParts(benchmark::State& state) {
  RequestParser parser;
  Request req;
  const std::string_view first = kPlaintext.substr(0, kPlaintext.size() / 2);
  for (auto _ : state) {
    size_t used = 0;
    benchmark::DoNotOptimize(parser.Parse(first, &req, &used));
    benchmark::DoNotOptimize(parser.Parse(kPlaintext, &req, &used));
  }
  if (req.target != "/plaintext") state.SkipWithError("did not parse");
}
BENCHMARK(BM_ParsePlaintextRequestInTwoParts);

void BM_SessionPipelined16(benchmark::State& state) {
  constexpr int kDepth = 16;
  std::string in;
  for (int i = 0; i < kDepth; ++i) in += kPlaintext;
  HttpDate date;
  HttpSession session;
  std::string out;
  session.Process(in, date, &out);  // sizes `out` once, as a server's buffer
  const uint64_t allocs = bench::Allocations();
  for (auto _ : state) {
    out.clear();
    SessionResult r = session.Process(in, date, &out);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(out.data());
  }
  if (out.find("Hello, World!") == std::string::npos) state.SkipWithError("no response");
  const int64_t requests = state.iterations() * kDepth;
  SetAllocCounter(state, allocs, requests);
  // items/s is requests/s; the per-request time is its inverse.
  state.SetItemsProcessed(requests);
  state.counters["ns/req"] = benchmark::Counter(
      static_cast<double>(requests), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_SessionPipelined16);

void BM_DateRefresh(benchmark::State& state) {
  HttpDate date;
  int64_t t = 1700000000;
  for (auto _ : state) {
    date.Refresh(t++);  // a new second every time: the worst case
    benchmark::DoNotOptimize(date.Value().data());
  }
}
BENCHMARK(BM_DateRefresh);

}  // namespace
}  // namespace netloop::http

BENCHMARK_MAIN();
