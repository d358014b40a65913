// The typed side of a varlink call: method tables generated from the IDL,
// decoded calls, and how a handler answers them from any thread.
#pragma once

#include "protocol/json.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

namespace simdjson::dom {
class element;
} // namespace simdjson::dom

namespace berth::json {
struct decode_error;
} // namespace berth::json

namespace berth::rpc {

class call;
using call_ptr = std::shared_ptr<call>;

/// After a call's final reply, an upgraded connection carries raw bytes:
/// either exactly `length` bytes from the client into the file `path`,
/// answered by `ack` (SendFile), or the file's bytes to the client,
/// removing it afterwards if asked (ReceiveFile). Then it is varlink again.
struct raw_transfer {
  enum class direction { to_file, from_file };
  direction dir = direction::to_file;
  std::string path;
  uint64_t length = 0;
  std::string ack;
  bool remove_after = false;
};

/// Where the raw bytes of a duplex upgrade go; implemented by the method's
/// owner. Every call comes on the I/O thread, never inside a call the owner
/// made into the server.
class raw_peer {
public:
  virtual ~raw_peer() = default;
  /// Bytes the client sent (called on the I/O thread, in order).
  virtual void on_data(std::string_view bytes) = 0;
  /// The client half-closed (EOF) or hung up; `hangup` true for a full
  /// close/reset. A half-close may be followed by a hang-up; a hang-up is
  /// the last call. The owner's own `raw_channel::close` brings neither.
  virtual void on_client_closed(bool hangup) = 0;
};

/// The server side of a duplex upgrade, given to the owner; thread-safe.
/// Writes and the close take effect on the I/O thread in the order they
/// were made, never inside the call that made them.
class raw_channel {
public:
  virtual ~raw_channel() = default;
  /// Queues bytes to the client; returns the backlog after queueing.
  virtual size_t write(std::string bytes) = 0;
  /// Bytes queued and not yet written to the socket (0 once closed).
  virtual size_t backlog() const = 0;
  /// Runs `f` once on the I/O thread as soon as the backlog is at or below
  /// `low_water`, or when the connection closes.
  virtual void when_writable(size_t low_water, std::function<void()> f) = 0;
  /// Pauses/resumes reading from the client (the owner's own backpressure).
  /// Called on the I/O thread (in `on_data`, say), it takes effect before
  /// the next read.
  virtual void pause_reading(bool paused) = 0;
  /// Ends the raw phase: flushes what is queued, then closes the connection
  /// (after a duplex phase the connection does not go back to varlink).
  virtual void close() = 0;
};

/// Hands the channel of a duplex upgrade to its owner.
using raw_ready = std::function<void(std::shared_ptr<raw_channel>)>;

/// Receives the replies of the calls of one connection. Implemented by the
/// server's connection session; safe to use from any thread.
class responder {
public:
  virtual ~responder() = default;
  /// Queues one reply message (JSON text, no NUL). `final` ends the call;
  /// `raw`, on a final reply, is the transfer that follows it.
  virtual void deliver(std::string message, bool final,
                       std::shared_ptr<const raw_transfer> raw = {}) = 0;
  /// Queues the final reply of an upgraded call and a duplex phase after
  /// it (see `call::reply_upgraded_duplex`). The default, for responders
  /// without raw phases, sends the reply and reports the client gone.
  virtual void deliver_duplex(std::string message,
                              std::shared_ptr<raw_peer> peer,
                              raw_ready ready);
  /// True once the peer hung up or the connection was closed.
  virtual bool closed() const = 0;
  /// Bytes of replies queued and not yet written (default: none).
  virtual size_t backlog() const;
  /// Runs `f` once when the backlog is at or below `low_water` or the
  /// connection closes (default: at once).
  virtual void when_writable(size_t low_water, std::function<void()> f);
};

struct method_info;

/// Flags of the call header.
struct call_flags {
  bool more = false;
  bool oneway = false;
  bool upgrade = false;
};

/// One decoded call. Exactly one final reply (or error) ends it.
class call {
public:
  /// A call dropped without a final reply closes its connection.
  virtual ~call();

  const method_info& method() const { return *method_; }
  const call_flags& flags() const { return flags_; }
  bool more() const { return flags_.more; }

  /// Sends `{"parameters":<params_json>}`; with `continues` more follow
  /// (only allowed when the caller asked for `more`).
  void reply_json(std::string_view params_json, bool continues = false);

  /// Sends the final reply of an upgraded call, then runs `t` on the
  /// connection (the caller must have asked for `upgrade`).
  void reply_upgraded(std::string_view params_json, raw_transfer t);

  /// Sends the final reply, then hands the connection to `peer`; `ready`
  /// gets the channel (on the I/O thread) once the reply is written. The
  /// caller must have asked for `upgrade` (without it the reply goes out
  /// as a plain one and the peer hears a hang-up). Bytes the client
  /// pipelined after its request go to the peer first. If the connection
  /// ends before the reply is out, `ready` never runs and the peer hears a
  /// hang-up. Ignored once the call has ended.
  void reply_upgraded_duplex(std::string_view params_json,
                             std::shared_ptr<raw_peer> peer,
                             raw_ready ready);

  /// Bytes of this connection's replies queued and not yet written to the
  /// socket; thread-safe.
  size_t backlog() const { return out_->backlog(); }

  /// Runs `f` once (on the I/O thread) as soon as the backlog is at or
  /// below `low_water` bytes (at the loop's next turn if it already is),
  /// or when the connection closes (check cancelled()). Never runs inside
  /// this call, nor under a lock of the server's; thread-safe. A producer
  /// sends while backlog() is under its limit, then waits for this.
  void when_writable(size_t low_water, std::function<void()> f) {
    out_->when_writable(low_water, std::move(f));
  }

  /// Sends an error reply; ends the call.
  void fail_json(std::string_view error_name, std::string params_json);

  /// Typed reply: `Out` has an `encode(writer&, const Out&)` overload.
  template <class Out>
  void reply(const Out& out, bool continues = false) {
    json::writer w;
    encode(w, out);
    reply_json(w.take(), continues);
  }

  /// Typed error: `E` names itself through `E::wire_name`.
  template <class E>
  void fail(const E& e) {
    json::writer w;
    encode(w, e);
    fail_json(E::wire_name, w.take());
  }

  /// org.varlink.service.MethodNotImplemented naming this method.
  void not_implemented();

  /// True once the connection is gone; work for this call can stop.
  bool cancelled() const { return out_->closed(); }

  /// Runs `f` (on the I/O thread) when the connection hangs up before the
  /// call ended; runs it at once if that already happened.
  void on_cancel(std::function<void()> f);

  /// Called by the server when the connection hangs up.
  void cancel();

  bool finished() const { return finished_.load(); }

  /// The `parameters` object exactly as sent, for interfaces registered to
  /// keep it ("" when absent or not kept).
  const std::string& raw_parameters() const { return raw_params_; }
  void keep_raw_parameters(std::string text) { raw_params_ = std::move(text); }

  // Set by the server after decoding.
  void bind(const method_info* m, call_flags f, std::shared_ptr<responder> r) {
    method_ = m;
    flags_ = f;
    out_ = std::move(r);
  }

private:
  friend class service;
  const method_info* method_ = nullptr;
  call_flags flags_;
  std::shared_ptr<responder> out_;
  std::string raw_params_;
  std::atomic<bool> finished_{false};
  std::mutex cancel_mtx_;
  std::function<void()> on_cancel_;
  bool cancelled_ = false;
};

/// A call carrying its decoded input struct.
template <class In>
class typed_call : public call {
public:
  In in;
};

class service;

struct method_info {
  std::string_view name;      ///< bare name, e.g. "GetVersion"
  std::string_view full_name; ///< e.g. "io.podman.GetVersion"
  size_t index;
  /// Decodes the `parameters` member (nullptr when absent) into a call.
  call_ptr (*decode)(const simdjson::dom::element* params,
                     json::decode_error& err);
};

struct interface_info {
  std::string_view name;
  std::string_view description;
  std::span<const method_info> methods;
  /// The method with this bare name, or nullptr.
  const method_info* find(std::string_view bare_name) const;
};

/// Base of the generated per-interface service classes: `invoke` routes a
/// decoded call to the virtual member function of its method.
class service {
public:
  virtual ~service() = default;
  virtual void invoke(const call_ptr& c) = 0;
  /// Answers a call whose handler failed unexpectedly. The default closes
  /// the connection, as the interface may declare no error that fits.
  virtual void internal_error(const call_ptr& c, const std::string& what);
};

} // namespace berth::rpc
