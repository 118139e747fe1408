// The HTTP servers with --tls-cert/--tls-key, driven by real clients: curl
// over https (a page, keep-alive reuse), openssl s_client (session
// resumption with a ticket), and a plaintext client on the TLS port.
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/server_process.h"
#include "tests/test_util.h"
#include "tests/tls_test_certs.h"

namespace netloop {
namespace {

using testing::CommandResult;

// stdout and stderr of `command`.
CommandResult RunCommand(const std::string& command) {
  return testing::RunCommand(command + " 2>&1");
}

size_t Count(const std::string& text, const std::string& what) {
  size_t count = 0;
  for (size_t p = 0; (p = text.find(what, p)) != std::string::npos; p += what.size()) ++count;
  return count;
}

class HttpsTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    const auto& certs = testing::MakeTestCertificates();
    ASSERT_TRUE(certs.has_value()) << "the openssl tool could not make certificates";
    certs_ = *certs;
    server_ = std::make_unique<testing::ServerProcess>(
        GetParam(), std::vector<std::string>{"--address", "tcp://127.0.0.1:0", "--loops", "2",
                                             "--tls-cert", certs_.leaf, "--tls-key",
                                             certs_.leaf_key});
    ASSERT_FALSE(server_->uri().empty()) << "the server did not start";
    port_ = std::to_string(testing::PortOf(server_->uri()));
    url_ = "https://localhost:" + port_ + "/";
  }

  // curl, trusting the test CA, with localhost pinned to 127.0.0.1.
  std::string Curl(const std::string& args) {
    return "timeout 20 curl -sS --cacert " + certs_.ca + " --resolve localhost:" + port_ +
           ":127.0.0.1 " + args;
  }

  testing::TestCertificates certs_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::string port_;
  std::string url_;
};

TEST_P(HttpsTest, CurlVerifiesTheServerAndGetsThePage) {
  CommandResult r = RunCommand(Curl("-w ' %{http_code} %{ssl_verify_result}' " + url_));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Hello, World!"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" 200 0"), std::string::npos) << r.output;  // status, verified
}

TEST_P(HttpsTest, CurlKeepsTheConnectionForTheNextRequest) {
  CommandResult r = RunCommand(Curl("-v " + url_ + " " + url_));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(Count(r.output, "Hello, World!"), 2u) << r.output;
  EXPECT_NE(r.output.find("Re-using existing connection"), std::string::npos) << r.output;
  EXPECT_EQ(Count(r.output, "SSL connection using"), 1u) << r.output;  // one handshake
}

TEST_P(HttpsTest, SClientResumesWithTheTicketOfAnEarlierConnection) {
  const std::string session = std::string(getenv("TEST_TMPDIR")) + "/session.pem";
  const std::string s_client = "printf 'GET / HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: "
                               "close\\r\\n\\r\\n' | timeout 20 openssl s_client -connect "
                               "127.0.0.1:" + port_ + " -servername localhost -CAfile " +
                               certs_.ca + " -ign_eof ";
  CommandResult first = RunCommand(s_client + "-sess_out " + session);
  ASSERT_NE(first.output.find("Hello, World!"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("New, TLSv1.3"), std::string::npos) << first.output;
  CommandResult second = RunCommand(s_client + "-sess_in " + session);
  EXPECT_NE(second.output.find("Hello, World!"), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("Reused, TLSv1.3"), std::string::npos) << second.output;
}

TEST_P(HttpsTest, PlaintextOnTheTlsPortIsClosedAndHttpsGoesOn) {
  int fd = testing::Connect(server_->uri());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(testing::WriteAll(fd, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  std::optional<std::string> answer = testing::ReadToEof(fd);
  close(fd);
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->find("HTTP/1.1"), std::string::npos) << "a plaintext answer on the TLS port";
  CommandResult r = RunCommand(Curl(url_));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Hello, World!"), std::string::npos) << r.output;
}

INSTANTIATE_TEST_SUITE_P(BothModels, HttpsTest,
                         ::testing::Values("examples/http/http_server",
                                           "examples/http/http_fiber_server"));

}  // namespace
}  // namespace netloop
