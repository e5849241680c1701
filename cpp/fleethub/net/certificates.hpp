// The hub's own CA and server certificate (architecture.md §6): made on first start when no certificate is
// configured, kept in the data directory, and reused afterwards. The server certificate is re-issued when
// its SANs no longer cover the configured hostname.
#pragma once
#include <string>
#include <vector>

#include "fleethub/core/result.hpp"

namespace fleethub::net {

struct certificate_paths {
  std::string ca_cert;      // PEM; what SDKs pass as server_verification_cert
  std::string server_cert;  // PEM chain: server certificate then CA
  std::string server_key;   // PEM private key
  bool created = false;     // true when this call made new files
};

// Ensures <dir>/ca.pem, ca.key, server.pem and server.key exist, with SANs: hostname, localhost, 127.0.0.1
// (plus `extra_names`). ECDSA P-256, CA valid 10 years, server certificate 2 years.
result<certificate_paths> ensure_certificates(const std::string& dir, const std::string& hostname,
                                              const std::vector<std::string>& extra_names = {});

}  // namespace fleethub::net
