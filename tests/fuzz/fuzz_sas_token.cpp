// SAS token fuzz target: parsing, resource splitting, scope checks and verification must never crash on
// any input; a token re-made for a parsed resource must verify.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fleethub/hub/sas.hpp"

using namespace fleethub::hub;

namespace {
const std::string key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto token = parse_sas_token(text);
  if (!token) {
    (void)parse_sas_resource(text);  // resources arrive from other places too (usernames, CBS audiences)
    return 0;
  }
  (void)parse_sas_resource(token->resource);
  (void)resource_covers(token->resource, "hub.local/devices/dev1/modules/m");
  (void)resource_covers("hub.local/devices/dev1", token->resource);
  (void)verify_sas_token(*token, {key, "not base64", ""}, 1700000000);
  (void)verify_sas_token(*token, {key}, INT64_MIN);

  auto remade = parse_sas_token(make_sas_token(token->resource, key, 4000000000, token->key_name));
  if (!remade || remade->resource != token->resource) std::abort();
  if (!verify_sas_token(*remade, {key}, 3999999999)) std::abort();
  return 0;
}
