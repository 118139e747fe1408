// Certificates for TLS tests, made fresh by the openssl command line tool in
// the test's temporary directory: a CA, a leaf it issued for "localhost" and
// 127.0.0.1, a second leaf for "other.test" (SNI), and a self-signed
// authority nobody trusts with a leaf of its own.
#ifndef NETLOOP_TESTS_TLS_TEST_CERTS_H_
#define NETLOOP_TESTS_TLS_TEST_CERTS_H_

#include <optional>
#include <string>

namespace netloop::testing {

struct TestCertificates {
  std::string ca;             // the trusted authority's certificate
  std::string leaf, leaf_key;  // localhost, 127.0.0.1
  std::string other, other_key;  // other.test
  std::string rogue_ca;        // an authority not trusted
  std::string rogue_leaf, rogue_leaf_key;  // localhost, issued by rogue_ca
};

// Makes them once per process (under TEST_TMPDIR, else /tmp); nullopt when
// the openssl tool failed (its output is printed).
const std::optional<TestCertificates>& MakeTestCertificates();

}  // namespace netloop::testing

#endif  // NETLOOP_TESTS_TLS_TEST_CERTS_H_
