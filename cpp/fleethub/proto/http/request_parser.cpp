// Sans-I/O HTTP/1.1 request parser on top of Boost.Beast's basic_parser (header-only; only its buffer-fed
// put() is used, never a stream). Beast does the grammar; this file adds what a hub needs around it:
//  - a buffer for the bytes Beast could not use yet (it wants an incomplete line presented again with more
//    bytes appended), so the caller can always treat need_more as "everything consumed";
//  - limits Beast lacks or counts per call (total header bytes across feeds, header count, target length),
//    and the refusal status for each (400, 413, 414, 431, 501, 505);
//  - refusing what Beast would accept but a server must not: methods outside the REST set, a
//    Transfer-Encoding other than plain "chunked", Content-Length together with Transfer-Encoding.
#include "fleethub/proto/http/request_parser.hpp"

#include <utility>  // GCC 12 + C++20: must precede Boost.Asio/Beast headers

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

namespace fleethub::proto::http {
namespace {

namespace bhttp = boost::beast::http;
using boost::beast::error_code;

constexpr std::array<std::string_view, 7> supported_methods{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                                             "OPTIONS"};

std::uint32_t clamp32(std::size_t v) {
  return static_cast<std::uint32_t>(std::min<std::size_t>(v, std::numeric_limits<std::uint32_t>::max()));
}

std::string excerpt(std::string_view s) {
  std::string out(s.substr(0, 40));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';  // log/JSON safe
  return s.size() > 40 ? out + "..." : out;
}

// After Beast's bad_version: are the 8 bytes where Beast read the version ("METHOD SP target SP HTTP/x.y") a
// well-formed version that is just not 1.0 or 1.1 ("HTTP/2.0", "HTTP/1.2")? Then the answer is 505, else the
// line is malformed (400). Beast decides on exactly those 8 bytes, so the verdict does not depend on how the
// bytes were split.
bool well_formed_other_version(std::string_view presented) {
  const std::size_t sp1 = presented.find(' ');
  if (sp1 == std::string_view::npos) return false;
  const std::size_t sp2 = presented.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return false;
  const std::string_view v = presented.substr(sp2 + 1, 8);
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || !digit(v[5]) || v[6] != '.' || !digit(v[7])) return false;
  return v != "HTTP/1.0" && v != "HTTP/1.1";  // a supported version with a bad line ending is malformed
}

}  // namespace

struct request_parser::impl {
  // Beast's callbacks write straight into the request being built; a refusal found in a callback is kept
  // here and Beast is stopped with an arbitrary error code.
  class beast_parser final : public bhttp::basic_parser<true> {
   public:
    explicit beast_parser(impl& owner) : o_(owner) {
      // Not eager: put() stops after each step (header, chunk-size line, chunk data), so feed() can bound
      // what a chunk-size line or the trailer section may span (see feed); feed() loops over the steps.
      eager(false);
      body_limit(static_cast<std::uint64_t>(o_.lim.max_body_bytes));
    }
    // Between chunks: Beast is reading a chunk-size line, or the last chunk and the trailer section.
    bool in_chunk_line() const { return is_header_done() && !is_done() && chunked && !in_chunk_data; }

    bool got_request_line = false;
    bool chunked = false;
    bool in_chunk_data = false;
    bool seen_content_length = false;
    bool seen_transfer_encoding = false;
    std::size_t fields = 0;
    std::uint32_t header_limit_now = 0;  // what header_limit() was last set to (Beast has no getter)

    void set_header_limit(std::uint32_t v) {
      header_limit_now = v;
      header_limit(v);
    }

   private:
    void refuse(error_code& ec, int status, std::string message) {
      o_.refuse_status = status;
      o_.refuse_message = std::move(message);
      ec = bhttp::error::bad_value;  // any error stops Beast; the status above is what counts
    }

    void on_request_impl(bhttp::verb, boost::beast::string_view method, boost::beast::string_view target,
                         int version, error_code& ec) override {
      got_request_line = true;
      const std::string_view m(method.data(), method.size());
      if (std::find(supported_methods.begin(), supported_methods.end(), m) == supported_methods.end())
        return refuse(ec, 501, "method " + excerpt(m) + " is not supported");
      if (target.size() > o_.lim.max_target_bytes)
        return refuse(ec, 414, "request-target is " + std::to_string(target.size()) + " bytes; the limit is " +
                                   std::to_string(o_.lim.max_target_bytes));
      // Beast accepts exactly "METHOD SP target SP HTTP/x.y CRLF", so the line length is known. Its header
      // limit applies to the start line and again to the fields, so take the line off for the fields.
      const std::size_t line = method.size() + target.size() + 12;
      set_header_limit(header_limit_now > line ? header_limit_now - static_cast<std::uint32_t>(line) : 0);
      o_.req.method.assign(method.data(), method.size());
      o_.req.target.assign(target.data(), target.size());
      o_.req.version = static_cast<unsigned>(version);
    }

    void on_response_impl(int, boost::beast::string_view, int, error_code& ec) override {
      ec = bhttp::error::bad_version;  // a request parser never sees a status line
    }

    void on_field_impl(bhttp::field f, boost::beast::string_view name, boost::beast::string_view value,
                       error_code& ec) override {
      if (++fields > o_.lim.max_headers)
        return refuse(ec, 431, "more than " + std::to_string(o_.lim.max_headers) + " header fields");
      if (is_header_done()) return;  // a chunked trailer: dropped, so it cannot override a real header
      const std::string_view v(value.data(), value.size());
      if (f == bhttp::field::transfer_encoding) {
        seen_transfer_encoding = true;
        // Only a lone "chunked": with other codings Beast would take the body as absent (or we would have
        // to decode gzip), and a proxy in front may frame it differently: a smuggling risk either way.
        if (!iequals(v, "chunked"))
          return refuse(ec, 501, "Transfer-Encoding \"" + excerpt(v) + "\" is not supported (only chunked)");
      } else if (f == bhttp::field::content_length) {
        seen_content_length = true;
      }
      if (seen_transfer_encoding && seen_content_length)
        return refuse(ec, 400, "both Content-Length and Transfer-Encoding (possible request smuggling)");
      o_.req.headers.push_back({std::string(name.data(), name.size()), std::string(v)});
    }

    void on_header_impl(error_code&) override {
      o_.req.keep_alive = keep_alive();
      chunked = seen_transfer_encoding;  // only a lone "chunked" got this far
    }

    void on_body_init_impl(const boost::optional<std::uint64_t>& content_length, error_code&) override {
      // Reserve what was announced (Beast refused anything above the body limit), but at most 64 KiB up
      // front: a peer that announces 1 MB and sends nothing should not cost 1 MB.
      if (content_length)
        o_.req.body.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(*content_length, 64 * 1024)));
    }

    std::size_t on_body_impl(boost::beast::string_view body, error_code&) override {
      o_.req.body.append(body.data(), body.size());
      return body.size();
    }

    void on_chunk_header_impl(std::uint64_t size, boost::beast::string_view, error_code&) override {
      in_chunk_data = size != 0;
    }

    std::size_t on_chunk_body_impl(std::uint64_t remain, boost::beast::string_view body, error_code&) override {
      o_.req.body.append(body.data(), body.size());
      if (remain == body.size()) in_chunk_data = false;  // `remain` counts this piece too
      return body.size();
    }

    void on_finish_impl(error_code&) override {}

    impl& o_;
  };

  explicit impl(parser_limits l) : lim(l) { reset(); }

  void reset() {
    req = request{};
    header_used = 0;
    refuse_status = 0;
    refuse_message.clear();
    stalled = false;
    bp.emplace(*this);
  }

  outcome fail(int status, std::string message) {
    failed = true;
    failure = outcome{outcome::kind::error, 0, status, std::move(message)};
    buf.clear();
    buf.shrink_to_fit();
    return failure;
  }

  // `presented`: the unconsumed bytes, which start at the request line when no line was parsed yet.
  outcome fail_from(const error_code& ec, std::string_view presented) {
    if (refuse_status != 0) return fail(refuse_status, refuse_message);
    if (ec == bhttp::error::header_limit) {
      // A target longer than the whole header budget never reaches on_request_impl: find it here.
      if (!bp->got_request_line) {
        // Look only where Beast looked (the first max_header_bytes), so the verdict does not depend on
        // how the bytes were split.
        presented = presented.substr(0, lim.max_header_bytes);
        const std::size_t sp = presented.find(' ');
        if (sp != std::string_view::npos) {
          const std::size_t end = presented.find_first_of(" \r\n", sp + 1);
          const std::size_t len = (end == std::string_view::npos ? presented.size() : end) - (sp + 1);
          if (len > lim.max_target_bytes)
            return fail(414, "request-target is longer than " + std::to_string(lim.max_target_bytes) + " bytes");
        }
      }
      return fail(431, "request line and header fields exceed " + std::to_string(lim.max_header_bytes) + " bytes");
    }
    if (ec == bhttp::error::body_limit)
      return fail(413, "request body exceeds " + std::to_string(lim.max_body_bytes) + " bytes");
    if (ec == bhttp::error::bad_version && !bp->got_request_line && well_formed_other_version(presented))
      return fail(505, "HTTP version not supported (only HTTP/1.0 and HTTP/1.1)");
    if ((ec == bhttp::error::bad_transfer_encoding && bp->seen_content_length) ||
        (ec == bhttp::error::bad_content_length && bp->seen_transfer_encoding))
      return fail(400, "both Content-Length and Transfer-Encoding (possible request smuggling)");
    return fail(400, "malformed HTTP request: " + ec.message());
  }

  parser_limits lim;
  std::optional<beast_parser> bp;
  request req;
  std::string buf;              // bytes of the current request Beast has not consumed yet (see feed)
  std::size_t header_used = 0;  // header bytes Beast consumed in earlier put() calls
  int refuse_status = 0;
  std::string refuse_message;
  bool stalled = false;         // Beast has seen all of `buf` and wants more
  bool ready = false;
  bool failed = false;
  outcome failure;
};

request_parser::request_parser(parser_limits lim) : p_(std::make_unique<impl>(lim)) {}
request_parser::~request_parser() = default;
request_parser::request_parser(request_parser&&) noexcept = default;
request_parser& request_parser::operator=(request_parser&&) noexcept = default;

request_parser::outcome request_parser::feed(bytes_view data) {
  impl& s = *p_;
  if (s.failed) return s.failure;  // dead: same answer, nothing consumed
  if (s.ready) return {outcome::kind::complete, 0, 0, {}};  // take() first

  // RFC 9112 §2.2: ignore empty lines before a request-line (some clients send CRLF after a POST body).
  std::size_t skipped = 0;
  if (s.buf.empty() && !s.bp->got_some())
    while (skipped < data.size() && (data[skipped] == '\r' || data[skipped] == '\n')) ++skipped;
  const std::string_view in = as_string_view(data.subspan(skipped));
  if (in.empty() && (s.stalled || s.buf.empty())) return {outcome::kind::need_more, data.size(), 0, {}};

  // Beast must see an unconsumed tail again, followed by the new bytes. Copy only when there is a tail.
  const std::size_t carried = s.buf.size();
  std::string_view presented = in;
  if (carried != 0) {
    s.buf.append(in);
    presented = s.buf;
  }

  std::size_t used = 0;
  error_code ec;
  while (used < presented.size() && !s.bp->is_done()) {
    const bool in_header = !s.bp->is_header_done();
    std::size_t slice = presented.size() - used;
    bool capped = false;
    if (in_header) {
      // Beast checks its header limit against what one put() sees; we count what earlier puts consumed.
      s.bp->set_header_limit(clamp32(s.lim.max_header_bytes - std::min(s.header_used, s.lim.max_header_bytes)));
    } else if (s.bp->in_chunk_line()) {
      // Beast 1.74 asserts (debug builds) that it sees at least 5 bytes when it resumes the last chunk
      // ("0\r\n" + trailers); the shortest end of a chunked body is 5 bytes, so waiting costs nothing.
      if (slice < 5) break;
      // Beast scans a chunk-size line and the trailer section without limit. Showing it at most
      // max_header_bytes makes a longer one fail the same way whether it came at once or in pieces.
      const std::size_t cap = std::max<std::size_t>(s.lim.max_header_bytes, 64);
      if (slice > cap) {
        slice = cap;
        capped = true;
      }
    }
    const std::size_t n = s.bp->put(boost::asio::const_buffer(presented.data() + used, slice), ec);
    if (in_header) s.header_used += n;
    used += n;
    if (ec == bhttp::error::need_more) {
      if (capped)
        return s.fail(431, "chunk-size line or trailer section longer than " + std::to_string(slice) + " bytes");
      ec = {};
      break;
    }
    if (ec) return s.fail_from(ec, presented.substr(used));
    if (n == 0) break;  // defensive: no progress without an error means Beast wants more
  }

  if (s.bp->is_done()) {
    s.ready = true;
    if (used >= carried) {
      s.buf.clear();
      return {outcome::kind::complete, skipped + (used - carried), 0, {}};
    }
    // The request ended inside bytes accepted by an earlier feed: keep the rest of those for the next
    // request and consume nothing of `data`. (Beast completes as soon as it has a message's bytes, so
    // this is not expected, but it keeps the "need_more consumed everything" promise either way.)
    s.buf.erase(carried);
    s.buf.erase(0, used);
    return {outcome::kind::complete, 0, 0, {}};
  }

  // need more: keep what Beast did not use.
  if (carried != 0)
    s.buf.erase(0, used);
  else
    s.buf.assign(presented.substr(used));
  // The tail is bounded: by Beast's header limit inside the header, by the slice cap between chunks, and
  // Beast consumes body bytes as they come.
  s.stalled = true;
  return {outcome::kind::need_more, data.size(), 0, {}};
}

request request_parser::take() {
  impl& s = *p_;
  if (!s.ready) throw std::logic_error("request_parser::take() without a complete request");
  request r = std::move(s.req);
  s.ready = false;
  s.reset();
  return r;
}

bool request_parser::in_progress() const {
  const impl& s = *p_;
  if (s.failed || s.ready) return false;
  return !s.buf.empty() || s.bp->got_some();
}

bool request_parser::expects_continue() const {
  const impl& s = *p_;
  if (s.failed || s.ready || !s.bp->is_header_done() || s.bp->is_done()) return false;
  const std::string* e = s.req.find("Expect");
  return e && iequals(*e, "100-continue");
}

}  // namespace fleethub::proto::http
