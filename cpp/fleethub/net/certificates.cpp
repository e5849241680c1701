#include "fleethub/net/certificates.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <memory>

namespace fleethub::net {

namespace {

namespace fs = std::filesystem;
struct x509_free { void operator()(X509* x) const { X509_free(x); } };
struct pkey_free { void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); } };
struct file_close { void operator()(FILE* f) const { std::fclose(f); } };
using x509_ptr = std::unique_ptr<X509, x509_free>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;
using file_ptr = std::unique_ptr<FILE, file_close>;

bool is_ip(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789.") == std::string::npos;
}

x509_ptr read_cert(const std::string& path) {
  file_ptr f(std::fopen(path.c_str(), "r"));
  if (!f) return nullptr;
  return x509_ptr(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
}

pkey_ptr read_key(const std::string& path) {
  file_ptr f(std::fopen(path.c_str(), "r"));
  if (!f) return nullptr;
  return pkey_ptr(PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr));
}

bool write_key(const std::string& path, EVP_PKEY* k) {
  file_ptr f(std::fopen(path.c_str(), "w"));
  if (!f) return false;
  ::chmod(path.c_str(), 0600);  // private keys are for the hub's eyes only
  return PEM_write_PrivateKey(f.get(), k, nullptr, nullptr, 0, nullptr, nullptr) == 1;
}

bool write_certs(const std::string& path, std::initializer_list<X509*> certs) {
  file_ptr f(std::fopen(path.c_str(), "w"));
  if (!f) return false;
  for (auto* c : certs)
    if (PEM_write_X509(f.get(), c) != 1) return false;
  return true;
}

bool add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

x509_ptr make_cert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key, long days, bool ca,
                   const std::string& san) {
  x509_ptr c(X509_new());
  X509_set_version(c.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600);  // tolerate small clock skew on clients
  X509_gmtime_adj(X509_getm_notAfter(c.get()), days * 24 * 3600);
  X509_set_pubkey(c.get(), key);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("fleethub"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* iss = issuer ? issuer : c.get();
  X509_set_issuer_name(c.get(), X509_get_subject_name(iss));
  bool ok = true;
  if (ca) {
    ok &= add_ext(c.get(), iss, NID_basic_constraints, "critical,CA:TRUE");
    ok &= add_ext(c.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    ok &= add_ext(c.get(), iss, NID_subject_key_identifier, "hash");
  } else {
    ok &= add_ext(c.get(), iss, NID_basic_constraints, "critical,CA:FALSE");
    ok &= add_ext(c.get(), iss, NID_key_usage, "critical,digitalSignature,keyEncipherment");
    ok &= add_ext(c.get(), iss, NID_ext_key_usage, "serverAuth");
    ok &= add_ext(c.get(), iss, NID_subject_alt_name, san);
    ok &= add_ext(c.get(), iss, NID_authority_key_identifier, "keyid:always");
  }
  if (!ok || X509_sign(c.get(), issuer_key ? issuer_key : key, EVP_sha256()) == 0) return nullptr;
  return c;
}

bool covers(X509* cert, const std::vector<std::string>& names) {
  for (auto& n : names) {
    int r = is_ip(n) ? X509_check_ip_asc(cert, n.c_str(), 0) : X509_check_host(cert, n.c_str(), n.size(), 0, nullptr);
    if (r != 1) return false;
  }
  // Re-issue well before expiry.
  return X509_cmp_time(X509_get0_notAfter(cert), nullptr) > 0;
}

}  // namespace

result<certificate_paths> ensure_certificates(const std::string& dir, const std::string& hostname,
                                              const std::vector<std::string>& extra_names) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(errc::storage, "cannot create certificate directory " + dir + ": " + ec.message());
  certificate_paths p{dir + "/ca.pem", dir + "/server.pem", dir + "/server.key", false};
  const std::string ca_key_path = dir + "/ca.key";

  std::vector<std::string> names{hostname, "localhost", "127.0.0.1"};
  for (auto& n : extra_names) names.push_back(n);
  std::string san;
  for (auto& n : names) {
    if (n.empty()) continue;
    if (!san.empty()) san += ",";
    san += (is_ip(n) ? "IP:" : "DNS:") + n;
  }

  auto ca = read_cert(p.ca_cert);
  auto ca_key = read_key(ca_key_path);
  if (!ca || !ca_key) {
    ca_key.reset(EVP_EC_gen("P-256"));
    if (!ca_key) return make_error(errc::storage, "cannot generate the CA key");
    ca = make_cert(ca_key.get(), "fleethub CA " + hostname, nullptr, nullptr, 3650, true, {});
    if (!ca || !write_key(ca_key_path, ca_key.get()) || !write_certs(p.ca_cert, {ca.get()}))
      return make_error(errc::storage, "cannot write the CA to " + dir);
    p.created = true;
  }
  auto server = read_cert(p.server_cert);
  auto server_key = read_key(p.server_key);
  bool signed_by_ca = server && X509_check_issued(ca.get(), server.get()) == X509_V_OK;
  if (!server || !server_key || !signed_by_ca || !covers(server.get(), names)) {
    server_key.reset(EVP_EC_gen("P-256"));
    if (!server_key) return make_error(errc::storage, "cannot generate the server key");
    server = make_cert(server_key.get(), hostname, ca.get(), ca_key.get(), 730, false, san);
    if (!server || !write_key(p.server_key, server_key.get()) || !write_certs(p.server_cert, {server.get(), ca.get()}))
      return make_error(errc::storage, "cannot write the server certificate to " + dir);
    p.created = true;
  }
  return p;
}

}  // namespace fleethub::net
