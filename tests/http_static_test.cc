// Both HTTP servers with --root, over http and https, driven by curl: a
// 100 MB file arrives with a matching sha256, HEAD gives the length alone,
// what is missing is 404, and what would leave the root (.., a symbolic link
// out, a NUL byte) or is no regular file is refused; a client that stops
// reading mid-file holds little server memory, does not hold up others, and
// is closed by the idle timeout.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "tests/server_process.h"
#include "tests/test_util.h"
#include "tests/tls_test_certs.h"

namespace netloop {
namespace {

using testing::CommandResult;

using testing::RunCommand;

std::string Root() { return std::string(getenv("TEST_TMPDIR")) + "/www"; }

// The served tree, made once per test binary: big.bin (100 MB), small.txt,
// a subdirectory, a link inside the root and one leading out of it, and a
// file next to the root that must stay unreachable.
void MakeTree() {
  static bool made = false;
  if (made) return;
  made = true;
  const std::string root = Root();
  mkdir(root.c_str(), 0755);
  mkdir((root + "/sub").c_str(), 0755);
  {
    int fd = open((root + "/big.bin").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    for (int mib = 0; mib < 100; ++mib) {
      const std::string block = testing::Pattern(1 << 20, static_cast<uint32_t>(mib + 1));
      ASSERT_EQ(write(fd, block.data(), block.size()), static_cast<ssize_t>(block.size()));
    }
    close(fd);
  }
  auto write_file = [](const std::string& path, const std::string& text) {
    int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    close(fd);
  };
  write_file(root + "/small.txt", "small file\n");
  write_file(root + "/sub/inner.txt", "inner\n");
  write_file(std::string(getenv("TEST_TMPDIR")) + "/secret.txt", "do not serve\n");
  ASSERT_EQ(symlink("small.txt", (root + "/inlink.txt").c_str()), 0);
  ASSERT_EQ(symlink("../secret.txt", (root + "/outlink.txt").c_str()), 0);
  ASSERT_EQ(symlink("/etc/hostname", (root + "/abslink.txt").c_str()), 0);
}

// (server binary, https)
using Param = std::tuple<const char*, bool>;

class HttpStaticTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(MakeTree());
    const auto& certs = testing::MakeTestCertificates();
    ASSERT_TRUE(certs.has_value());
    ca_ = certs->ca;
    std::vector<std::string> args = {"--address", "tcp://127.0.0.1:0", "--loops", "2",
                                     "--root", Root(), "--idle-timeout", "1"};
    if (https()) args.insert(args.end(), {"--tls-cert", certs->leaf, "--tls-key", certs->leaf_key});
    server_ = std::make_unique<testing::ServerProcess>(std::get<0>(GetParam()), args);
    ASSERT_FALSE(server_->uri().empty()) << "the server did not start";
    port_ = std::to_string(testing::PortOf(server_->uri()));
  }
  bool https() const { return std::get<1>(GetParam()); }
  std::string Url(const std::string& path) {
    return (https() ? "https://localhost:" : "http://localhost:") + port_ + path;
  }
  // curl against the server; `args` come before the URL.
  std::string Curl(const std::string& args, const std::string& path) {
    return "timeout 60 curl -sS --path-as-is --cacert " + ca_ + " --resolve localhost:" + port_ +
           ":127.0.0.1 " + args + " '" + Url(path) + "'";
  }
  std::string Status(const std::string& path) {
    return RunCommand(Curl("-o /dev/null -w '%{http_code}'", path)).output;
  }

  std::string ca_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::string port_;
};

TEST_P(HttpStaticTest, AHundredMegabytesArriveWithAMatchingSha256) {
  CommandResult want = RunCommand("sha256sum < " + Root() + "/big.bin");
  CommandResult got = RunCommand(Curl("", "/big.bin") + " | sha256sum");
  ASSERT_EQ(got.exit_code, 0) << got.output;
  ASSERT_EQ(want.output.size(), got.output.size());
  EXPECT_EQ(got.output, want.output);
}

TEST_P(HttpStaticTest, HeadGivesTheLengthAndNoBody) {
  CommandResult r = RunCommand(Curl("-I", "/big.bin"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("HTTP/1.1 200 OK"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Content-Length: 104857600"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Content-Type: application/octet-stream"), std::string::npos);
  // Keep-alive after a file: a small one and the built-in page on one
  // connection, in order.
  CommandResult two = RunCommand(Curl("", "/small.txt") + " '" + Url("/plaintext") + "'");
  EXPECT_EQ(two.output, "small file\nHello, World!") << two.output;
}

TEST_P(HttpStaticTest, MissingIs404AndWhatLeavesTheRootIsRefused) {
  EXPECT_EQ(Status("/nothing-here"), "404");
  EXPECT_EQ(Status("/sub/inner.txt"), "200");
  EXPECT_EQ(Status("/inlink.txt"), "200");  // a link that stays inside
  EXPECT_EQ(Status("/../secret.txt"), "403");
  EXPECT_EQ(Status("/sub/../../secret.txt"), "403");
  EXPECT_EQ(Status("/%2e%2e/secret.txt"), "403");
  EXPECT_EQ(Status("/outlink.txt"), "403");
  EXPECT_EQ(Status("/abslink.txt"), "403");
  EXPECT_EQ(Status("/small.txt%00.html"), "400");
  EXPECT_EQ(Status("/sub"), "403");  // no directory listings
  EXPECT_EQ(Status("/plaintext"), "200");  // the built-in routes stay
}

TEST_P(HttpStaticTest, AClientThatStopsReadingMidFileHoldsLittleAndIsClosed) {
  if (https()) GTEST_SKIP() << "a raw socket speaks plaintext only";
  const int fds_before = server_->OpenDescriptors();
  const int64_t rss_before = server_->RssBytes();
  int fd = testing::Connect(server_->uri());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(testing::WriteAll(fd, "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(testing::ReadExactly(fd, 1 << 20).has_value());
  // Stalled: others are still served meanwhile.
  EXPECT_EQ(Status("/small.txt"), "200");
  // Nothing of the file piles up in the server (it stays in the page cache).
  EXPECT_LT(server_->RssBytes() - rss_before, 16 << 20);
  // The idle timeout (1 s) closes the stalled connection: the server's
  // descriptors go back to where they were.
  EXPECT_TRUE(testing::WaitFor([&] { return server_->OpenDescriptors() == fds_before; }, 20000));
  close(fd);
}

INSTANTIATE_TEST_SUITE_P(
    BothModels, HttpStaticTest,
    ::testing::Combine(::testing::Values("examples/http/http_server",
                                         "examples/http/http_fiber_server"),
                       ::testing::Bool()),
    [](const ::testing::TestParamInfo<Param>& info) {
      std::string name = std::string(std::get<0>(info.param)).find("fiber") != std::string::npos
                             ? "Fiber"
                             : "Callback";
      return name + (std::get<1>(info.param) ? "Https" : "Http");
    });

}  // namespace
}  // namespace netloop
