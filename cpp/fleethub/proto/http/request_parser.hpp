// Sans-I/O HTTP/1.1 request parser (Boost.Beast's parser fed with byte buffers; no sockets): feed bytes as
// they arrive, take complete requests. Pipelined requests are parsed one after another from the same bytes.
// Limits on header bytes, header count, body size and target length refuse a request with the status to
// answer (400, 413, 414, 431, 501, 505) before it is buffered whole.
// Thread safety: none; one parser per connection.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "fleethub/core/bytes.hpp"
#include "fleethub/proto/http/message.hpp"

namespace fleethub::proto::http {

struct parser_limits {
  std::size_t max_header_bytes = 16 * 1024;  // request line + headers (431 beyond)
  std::size_t max_headers = 100;             // header fields (431 beyond)
  std::size_t max_target_bytes = 8 * 1024;   // request-target (414 beyond)
  std::size_t max_body_bytes = 1024 * 1024;  // after de-chunking (413 beyond)
};

class request_parser {
 public:
  explicit request_parser(parser_limits lim = {});
  ~request_parser();
  request_parser(request_parser&&) noexcept;
  request_parser& operator=(request_parser&&) noexcept;

  struct outcome {
    enum class kind {
      need_more,  // every byte was consumed; no complete request yet
      complete,   // a request is ready: take() it; bytes past `consumed` belong to the next request
      error,      // refuse with `status` and close the connection after answering
    } what = kind::need_more;
    std::size_t consumed = 0;   // bytes of `data` used
    int status = 0;             // for error
    std::string message;        // for error: what was wrong, for the IoT Hub error body and the log
  };

  // Parses from `data`. After `complete`, call take() before feeding the remaining bytes. After `error`
  // the parser is dead (the caller answers `status` and closes).
  outcome feed(bytes_view data);
  // The completed request; resets the parser for the next one.
  request take();
  // True while a request has been started (some bytes consumed) but is not complete: a peer that closes
  // now cut a request short (vs. an idle keep-alive connection closing between requests).
  bool in_progress() const;
  // True while the current request's header is complete, its body is not, and it asked for
  // "Expect: 100-continue": the driver answers "HTTP/1.1 100 Continue" once so the client sends the body
  // (otherwise clients like curl wait a second first).
  bool expects_continue() const;

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

}  // namespace fleethub::proto::http
