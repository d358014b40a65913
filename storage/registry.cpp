#include "storage/registry.hpp"

#include "storage/digest.hpp"
#include "storage/reference.hpp"

#include <curl/curl.h>
#include <simdjson.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

namespace berth::storage {

namespace {

constexpr size_t max_manifest_size = 4 << 20;
constexpr size_t max_answer_size = 4 << 20;
constexpr size_t max_idle_handles = 16;
constexpr int catalog_page = 1000;
/// How often one request answers a 401: a token another thread fetched
/// meanwhile may be tried before this request fetches its own.
constexpr int max_auth_rounds = 3;

const std::string manifest_accept =
    "Accept: " + std::string(oci_manifest_type) + ", " +
    std::string(oci_index_type) + ", " + std::string(docker_manifest_type) +
    ", " + std::string(docker_list_type);

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string pull_scope(const std::string& repository) {
  return "repository:" + repository + ":pull";
}

std::string push_scope(const std::string& repository) {
  return "repository:" + repository + ":pull,push";
}

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// One HTTP answer: the final one when redirects were followed.
struct response {
  long status = 0;
  uint64_t content_length = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  std::string header(std::string_view name) const {
    for (auto& [k, v] : headers)
      if (k == name)
        return v;
    return {};
  }
};

// What to send, and where the body of a successful answer goes.
struct request {
  std::string method = "GET";
  std::string path; ///< "/v2/..." on the registry, or
  std::string url;  ///< an absolute URL
  std::vector<std::string> headers;
  std::string scope;             ///< token scope for this request
  bool authenticate = true;      ///< false for token requests themselves
  bool send_credentials = false; ///< basic auth regardless of challenges
  std::string_view upload;
  int upload_fd = -1;
  uint64_t upload_size = 0;
  const transfer_progress* upload_progress = nullptr;
  /// Receives the body of a 2xx answer; false stops with `failure` set.
  std::function<bool(const char*, size_t, const response&)> sink;
  /// Called before a repeated attempt; false gives up with the reason.
  std::function<bool(std::string&)> rewind;
  size_t max_body = max_answer_size;
  std::string failure; ///< why a callback stopped the transfer
  /// What the latest attempt sent: basic credentials, or this bearer
  /// token. A 401 is judged by these, not by what the client holds now,
  /// which other threads may have changed since the request left.
  bool sent_basic = false;
  std::string sent_token;
};

// The per-attempt state libcurl's callbacks see.
struct transfer {
  request& rq;
  response& rs;
  uint64_t sent = 0;
};

size_t on_header(char* p, size_t size, size_t n, void* ud) {
  auto& rs = static_cast<transfer*>(ud)->rs;
  std::string_view line = trim(std::string_view(p, size * n));
  if (line.starts_with("HTTP/")) {
    size_t sp = line.find(' ');
    rs = {};
    if (sp != std::string_view::npos)
      rs.status =
          std::strtol(std::string(line.substr(sp + 1)).c_str(), nullptr, 10);
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos)
    return size * n;
  std::string name = lowercase(trim(line.substr(0, colon)));
  std::string value(trim(line.substr(colon + 1)));
  if (name == "content-length")
    rs.content_length = std::strtoull(value.c_str(), nullptr, 10);
  rs.headers.emplace_back(std::move(name), std::move(value));
  return size * n;
}

size_t on_body(char* p, size_t size, size_t n, void* ud) {
  auto& t = *static_cast<transfer*>(ud);
  size_t len = size * n;
  if (t.rq.sink && t.rs.status >= 200 && t.rs.status < 300)
    return t.rq.sink(p, len, t.rs) ? len : 0;
  if (t.rs.body.size() + len > t.rq.max_body) {
    t.rq.failure =
        "answer larger than " + std::to_string(t.rq.max_body) + " bytes";
    return 0;
  }
  t.rs.body.append(p, len);
  return len;
}

size_t on_upload(char* buf, size_t size, size_t n, void* ud) {
  auto& t = *static_cast<transfer*>(ud);
  auto& rq = t.rq;
  size_t want = static_cast<size_t>(
      std::min<uint64_t>(size * n, rq.upload_size - t.sent));
  ssize_t got = static_cast<ssize_t>(want);
  if (rq.upload_fd >= 0) {
    do {
      got = ::pread(rq.upload_fd, buf, want, static_cast<off_t>(t.sent));
    } while (got < 0 && errno == EINTR);
    if (got < 0 || (got == 0 && want > 0)) {
      rq.failure = got < 0 ? std::string("reading: ") + std::strerror(errno)
                           : "file ends before the blob's size";
      return CURL_READFUNC_ABORT;
    }
  } else {
    std::memcpy(buf, rq.upload.data() + t.sent, want);
  }
  t.sent += static_cast<uint64_t>(got);
  if (rq.upload_progress && *rq.upload_progress &&
      !(*rq.upload_progress)(t.sent, rq.upload_size)) {
    rq.failure = "cancelled";
    return CURL_READFUNC_ABORT;
  }
  return static_cast<size_t>(got);
}

bool transient(CURLcode rc) {
  switch (rc) {
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    return true;
  default:
    return false;
  }
}

// Failures that an https attempt on a plain-http registry produces.
bool tls_level(CURLcode rc) {
  switch (rc) {
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_COULDNT_CONNECT:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
    return true;
  default:
    return false;
  }
}

bool retryable_status(long status) {
  return status >= 500 || status == 429 || status == 408;
}

std::string describe(CURLcode rc, const std::string& detail, bool tls_verify) {
  std::string s = detail.empty() ? curl_easy_strerror(rc) : detail;
  if (rc == CURLE_SSL_CONNECT_ERROR && tls_verify &&
      s.find("wrong version number") != std::string::npos)
    s += " (the registry may serve plain http; tlsVerify=false allows it)";
  return s;
}

std::string code_text(std::string_view code) {
  std::string s = lowercase(code);
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

std::string status_text(long status, std::string_view body) {
  switch (status) {
  case 401:
    return "authentication required";
  case 403:
    return "requested access to the resource is denied";
  case 404:
    return "not found";
  case 429:
    return "too many requests";
  default:
    break;
  }
  std::string s = "unexpected HTTP status " + std::to_string(status);
  std::string_view first = trim(body.substr(0, body.find('\n')));
  bool printable = std::all_of(first.begin(), first.end(),
                               [](char c) { return c >= 0x20 && c < 0x7f; });
  if (!first.empty() && printable)
    s += ": " + std::string(first.substr(0, 200));
  return s;
}

std::string json_string(simdjson::dom::element e, const char* key) {
  std::string_view v;
  if (e[key].get(v) == simdjson::SUCCESS)
    return std::string(v);
  return {};
}

// The messages of a v2 error body, or a token server's own fields.
std::string body_reason(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (body.empty() || parser.parse(body.data(), body.size()).get(doc))
    return {};
  std::string reason;
  simdjson::dom::array errors;
  if (doc["errors"].get(errors) == simdjson::SUCCESS) {
    for (auto e : errors) {
      std::string text = json_string(e, "message");
      if (text.empty())
        text = code_text(json_string(e, "code"));
      if (!text.empty())
        reason += (reason.empty() ? "" : "; ") + text;
    }
    return reason;
  }
  for (const char* key : {"details", "error_description", "error", "message"})
    if (reason = json_string(doc, key); !reason.empty())
      return reason;
  return {};
}

std::string known_manifest_type(std::string_view type) {
  for (std::string_view t : {oci_manifest_type, oci_index_type,
                             docker_manifest_type, docker_list_type})
    if (type == t)
      return std::string(t);
  return {};
}

// The manifest's media type from the Content-Type header, else from the
// body; empty for what berth cannot use (Docker schema 1, not JSON).
std::string manifest_type(std::string_view content_type,
                          std::string_view body) {
  std::string ct =
      lowercase(trim(content_type.substr(0, content_type.find(';'))));
  if (std::string t = known_manifest_type(ct); !t.empty())
    return t;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body.data(), body.size()).get(doc))
    return {};
  if (std::string t = known_manifest_type(json_string(doc, "mediaType"));
      !t.empty())
    return t;
  int64_t version = 0;
  if (doc["schemaVersion"].get(version) || version != 2)
    return {};
  if (doc["manifests"].error() == simdjson::SUCCESS)
    return std::string(oci_index_type);
  if (doc["config"].error() == simdjson::SUCCESS)
    return std::string(oci_manifest_type);
  return {};
}

std::string read_file(const std::filesystem::path& p, std::string& err) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in)
    err = "reading " + p.string() + ": " + std::strerror(errno);
  return ss.str();
}

// The CA file libcurl trusts by default: CURLOPT_CAINFO_BLOB replaces it,
// and certificate dirs add to the system's CAs rather than replace them.
std::string system_ca_bundle() {
  CURL* h = curl_easy_init();
  char* path = nullptr;
  std::string bundle, ignored;
  if (h && curl_easy_getinfo(h, CURLINFO_CAINFO, &path) == CURLE_OK && path)
    bundle = read_file(path, ignored) + "\n";
  if (h)
    curl_easy_cleanup(h);
  return bundle;
}

} // namespace

bool is_index_type(std::string_view media_type) {
  return media_type == oci_index_type || media_type == docker_list_type;
}

std::string registry_endpoint(std::string_view registry) {
  if (registry == "docker.io" || registry == "index.docker.io")
    return "registry-1.docker.io";
  return std::string(registry);
}

bool parse_auth_challenge(std::string_view header, auth_challenge& out) {
  std::string_view s = trim(header);
  size_t sp = s.find(' ');
  auth_challenge c;
  c.scheme = lowercase(s.substr(0, sp));
  if (c.scheme.empty() || c.scheme.find('=') != std::string::npos)
    return false;
  s = sp == std::string_view::npos ? std::string_view{} : s.substr(sp);
  while (true) {
    while (!s.empty() && (s.front() == ',' || s.front() == ' '))
      s.remove_prefix(1);
    size_t eq = s.find('=');
    if (s.empty() || eq == std::string_view::npos)
      break;
    std::string key = lowercase(trim(s.substr(0, eq)));
    s.remove_prefix(eq + 1);
    while (!s.empty() && s.front() == ' ')
      s.remove_prefix(1);
    std::string value;
    if (!s.empty() && s.front() == '"') {
      size_t i = 1;
      for (; i < s.size() && s[i] != '"'; ++i) {
        if (s[i] == '\\' && i + 1 < s.size())
          ++i;
        value += s[i];
      }
      s.remove_prefix(std::min(i + 1, s.size()));
    } else {
      size_t comma = s.find(',');
      value = std::string(trim(s.substr(0, comma)));
      s.remove_prefix(comma == std::string_view::npos ? s.size() : comma);
    }
    c.params[key] = std::move(value);
  }
  out = std::move(c);
  return true;
}

std::string registry_error_reason(long status, std::string_view body) {
  std::string reason = body_reason(body);
  if (reason.empty())
    reason = status_text(status, body);
  if (status == 401 && !reason.starts_with("unauthorized"))
    reason = "unauthorized: " + reason;
  if (status == 403 && !reason.starts_with("denied"))
    reason = "denied: " + reason;
  return reason;
}

bool choose_platform_manifest(std::string_view index_body,
                              const image_platform& platform,
                              std::string& digest, std::string& media_type,
                              std::string& err) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::array entries;
  if (parser.parse(index_body.data(), index_body.size()).get(doc) ||
      doc["manifests"].get(entries)) {
    err = "manifest list is not valid JSON with a \"manifests\" array";
    return false;
  }
  bool found = false;
  for (auto e : entries) {
    simdjson::dom::element p;
    if (e["platform"].get(p) || json_string(p, "os") != platform.os ||
        json_string(p, "architecture") != platform.architecture)
      continue;
    std::string variant = json_string(p, "variant");
    bool exact = variant == platform.variant;
    if (!exact && !platform.variant.empty() && !variant.empty())
      continue;
    if (found && !exact)
      continue;
    std::string d = json_string(e, "digest");
    if (!valid_digest(d))
      continue;
    digest = d;
    media_type = json_string(e, "mediaType");
    found = true;
    if (exact)
      break;
  }
  if (!found)
    err = "no image found in manifest list for architecture " +
          platform.architecture + ", variant \"" + platform.variant +
          "\", OS " + platform.os;
  return found;
}

std::string next_link(std::string_view link) {
  size_t open = link.find('<');
  size_t close = link.find('>', open);
  if (open == std::string_view::npos || close == std::string_view::npos)
    return {};
  std::string rest = lowercase(link.substr(close + 1));
  rest.erase(std::remove(rest.begin(), rest.end(), '"'), rest.end());
  if (rest.find("rel=next") == std::string::npos)
    return {};
  return std::string(link.substr(open + 1, close - open - 1));
}

// ---- the client ------------------------------------------------------

struct registry_client::impl {
  std::string registry;
  std::string host;
  registry_options opt;
  std::string ca_bundle;
  std::string client_cert, client_key;
  std::string setup_error;

  mutable std::mutex mu;
  std::string scheme = "https";
  std::map<std::string, std::string> tokens; ///< by scope
  bool basic = false;
  std::vector<CURL*> idle;
  /// Held while a token is fetched, so that threads challenged together
  /// wait for one token instead of each asking for its own.
  std::mutex token_fetch;

  enum class auth_result { retry, final, failed };

  impl(std::string r, registry_options o)
      : registry(std::move(r)), host(registry_endpoint(registry)),
        opt(std::move(o)) {
    load_cert_dir();
  }

  ~impl() {
    for (CURL* h : idle)
      curl_easy_cleanup(h);
  }

  std::string base_url() const {
    std::lock_guard lock(mu);
    return scheme + "://" + host;
  }

  std::string current_scheme() const {
    std::lock_guard lock(mu);
    return scheme;
  }

  std::string name(const std::string& repository) const {
    return registry + "/" + repository;
  }

  std::string absolute(const std::string& location) const {
    if (location.starts_with("http://") || location.starts_with("https://"))
      return location;
    return base_url() + (location.starts_with("/") ? "" : "/") + location;
  }

  void load_cert_dir();
  CURL* acquire();
  void release(CURL* h);
  void set_auth(CURL* h, request& rq, curl_slist*& headers);
  CURLcode transfer_once(request& rq, response& rs, std::string& detail);
  bool fall_back_to_http(const request& rq, CURLcode rc,
                         const std::string& used);
  void backoff(int attempt, const response* rs) const;
  bool perform(request& rq, response& rs, std::string& err);
  auth_result authenticate(const request& rq, const response& rs, bool& fetched,
                           std::string& err);
  bool fetch_token(const auth_challenge& ch, const std::string& scope,
                   std::string& token, std::string& err);
  bool download_blob(const std::string& repository, const std::string& digest,
                     const std::function<bool(const char*, size_t, uint64_t,
                                              std::string&)>& consume,
                     const std::function<bool(std::string&)>& restart,
                     std::string& err);
  bool upload_blob(const std::string& repository, const std::string& digest,
                   request& put, std::string& err);
  bool list(request& rq, const char* key, std::vector<std::string>& out,
            size_t limit, std::string& err);
};

// Every `*.crt` is a CA; `X.cert` goes with `X.key`. A missing directory
// is no error, as in containers/image.
void registry_client::impl::load_cert_dir() {
  namespace fs = std::filesystem;
  if (opt.cert_dir.empty())
    return;
  std::error_code ec;
  std::vector<fs::path> files;
  for (fs::directory_iterator it(opt.cert_dir, ec), end; !ec && it != end;
       it.increment(ec))
    files.push_back(it->path());
  if (ec && ec != std::errc::no_such_file_or_directory) {
    setup_error =
        "reading certificate directory " + opt.cert_dir + ": " + ec.message();
    return;
  }
  std::sort(files.begin(), files.end());
  bool has_ca = std::any_of(files.begin(), files.end(),
                            [](auto& f) { return f.extension() == ".crt"; });
  if (has_ca)
    ca_bundle = system_ca_bundle();
  for (auto& f : files) {
    if (f.extension() == ".crt") {
      ca_bundle += read_file(f, setup_error) + "\n";
    } else if (f.extension() == ".cert") {
      fs::path key = fs::path(f).replace_extension(".key");
      if (!fs::exists(key, ec))
        setup_error = "missing key " + key.string() +
                      " for client certificate " + f.string();
      client_cert = f.string();
      client_key = key.string();
    }
    if (!setup_error.empty())
      return;
  }
}

CURL* registry_client::impl::acquire() {
  {
    std::lock_guard lock(mu);
    if (!idle.empty()) {
      CURL* h = idle.back();
      idle.pop_back();
      curl_easy_reset(h);
      return h;
    }
  }
  return curl_easy_init();
}

void registry_client::impl::release(CURL* h) {
  std::lock_guard lock(mu);
  if (idle.size() < max_idle_handles)
    idle.push_back(h);
  else
    curl_easy_cleanup(h);
}

void registry_client::impl::set_auth(CURL* h, request& rq,
                                     curl_slist*& headers) {
  rq.sent_basic = false;
  rq.sent_token.clear();
  bool use_basic = rq.send_credentials;
  if (rq.authenticate) {
    std::lock_guard lock(mu);
    auto it = tokens.find(rq.scope);
    if (it != tokens.end()) {
      rq.sent_token = it->second;
      std::string line = "Authorization: Bearer " + it->second;
      headers = curl_slist_append(headers, line.c_str());
      return;
    }
    use_basic = use_basic || basic;
  }
  if (use_basic && !opt.username.empty()) {
    rq.sent_basic = true;
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(h, CURLOPT_USERNAME, opt.username.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, opt.password.c_str());
  }
}

CURLcode registry_client::impl::transfer_once(request& rq, response& rs,
                                              std::string& detail) {
  rs = {};
  rq.failure.clear();
  transfer t{rq, rs};
  std::string url = rq.url.empty() ? base_url() + rq.path : rq.url;
  CURL* h = acquire();
  if (!h) {
    detail = "cannot create a libcurl handle";
    return CURLE_FAILED_INIT;
  }
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_slist* headers = nullptr;
  for (auto& line : rq.headers)
    headers = curl_slist_append(headers, line.c_str());
  headers = curl_slist_append(headers, "Expect:");
  set_auth(h, rq, headers);

  // Where and how.
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "berth/" BERTH_VERSION);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
  long secs = static_cast<long>(opt.timeout.count());
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, secs);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, secs);

  // TLS.
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, opt.tls_verify ? 1L : 0L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, opt.tls_verify ? 2L : 0L);
  if (!ca_bundle.empty()) {
    curl_blob blob{ca_bundle.data(), ca_bundle.size(), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
  }
  if (!client_cert.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLCERT, client_cert.c_str());
    curl_easy_setopt(h, CURLOPT_SSLKEY, client_key.c_str());
  }

  // Method and body.
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  if (rq.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (rq.method == "PUT") {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                     static_cast<curl_off_t>(rq.upload_size));
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
    curl_easy_setopt(h, CURLOPT_READDATA, &t);
  } else if (rq.method == "POST") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
  } else if (rq.method != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq.method.c_str());
  }

  CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK)
    detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(headers);
  release(h);
  return rc;
}

// podman's rule for insecure registries: when https fails below HTTP, the
// registry is spoken to in plain http from then on.
bool registry_client::impl::fall_back_to_http(const request& rq, CURLcode rc,
                                              const std::string& used) {
  if (opt.tls_verify || !rq.url.empty() || used != "https" || !tls_level(rc))
    return false;
  std::lock_guard lock(mu);
  scheme = "http";
  return true;
}

void registry_client::impl::backoff(int attempt, const response* rs) const {
  auto delay = opt.retry_delay * (1 << std::min(attempt, 6));
  if (rs) {
    long after = std::strtol(rs->header("retry-after").c_str(), nullptr, 10);
    if (after > 0)
      delay = std::max<std::chrono::milliseconds>(
          delay, std::chrono::seconds(std::min(after, 30L)));
  }
  std::this_thread::sleep_for(
      std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(30)));
}

// One request with its retries: falling back to http, answering a 401
// challenge once, and retrying transient failures with backoff. A true
// return means an HTTP answer arrived; its status is the caller's to judge.
bool registry_client::impl::perform(request& rq, response& rs,
                                    std::string& err) {
  if (!setup_error.empty()) {
    err = setup_error;
    return false;
  }
  int auth_rounds = 0;
  bool fetched = false;
  int attempt = 0;
  for (bool first = true;; first = false) {
    if (!first && rq.rewind && !rq.rewind(err))
      return false;
    std::string used = current_scheme();
    std::string detail;
    CURLcode rc = transfer_once(rq, rs, detail);

    if (rc != CURLE_OK) {
      if (!rq.failure.empty()) {
        err = rq.failure;
        return false;
      }
      if (fall_back_to_http(rq, rc, used))
        continue;
      if (transient(rc) && attempt < opt.retries) {
        backoff(attempt++, nullptr);
        continue;
      }
      err = describe(rc, detail, opt.tls_verify);
      return false;
    }

    if (rs.status == 401 && rq.authenticate &&
        auth_rounds++ < max_auth_rounds) {
      auth_result r = authenticate(rq, rs, fetched, err);
      if (r == auth_result::failed)
        return false;
      if (r == auth_result::retry)
        continue;
      return true;
    }

    if (retryable_status(rs.status) && attempt < opt.retries) {
      backoff(attempt++, &rs);
      continue;
    }
    return true;
  }
}

// Answers a 401 by what this request sent. Bearer: a token that another
// thread stored since is tried first, else this request fetches one (once;
// a 401 for the token it fetched itself is final). Basic: a request that
// went without credentials is sent again with them; one that carried them
// was refused for good. Without a usable challenge the 401 is final.
registry_client::impl::auth_result
registry_client::impl::authenticate(const request& rq, const response& rs,
                                    bool& fetched, std::string& err) {
  auth_challenge bearer, c;
  bool has_bearer = false, has_basic = false;
  for (auto& [k, v] : rs.headers) {
    if (k != "www-authenticate" || !parse_auth_challenge(v, c))
      continue;
    if (c.scheme == "bearer" && !has_bearer) {
      bearer = c;
      has_bearer = true;
    }
    has_basic = has_basic || c.scheme == "basic";
  }
  if (has_bearer) {
    std::lock_guard one_fetch(token_fetch);
    {
      std::lock_guard lock(mu);
      auto it = tokens.find(rq.scope);
      if (it != tokens.end() && it->second != rq.sent_token)
        return auth_result::retry;
    }
    if (fetched)
      return auth_result::final;
    std::string token;
    if (!fetch_token(bearer, rq.scope, token, err))
      return auth_result::failed;
    fetched = true;
    std::lock_guard lock(mu);
    tokens[rq.scope] = token;
    return auth_result::retry;
  }
  if (!has_basic || opt.username.empty() || rq.sent_basic)
    return auth_result::final;
  std::lock_guard lock(mu);
  basic = true;
  return auth_result::retry;
}

bool registry_client::impl::fetch_token(const auth_challenge& ch,
                                        const std::string& scope,
                                        std::string& token, std::string& err) {
  auto param = [&](const char* key) {
    auto it = ch.params.find(key);
    return it == ch.params.end() ? std::string() : it->second;
  };
  std::string realm = param("realm");
  if (realm.empty()) {
    err = "bearer challenge without a realm";
    return false;
  }

  // realm?service=..&scope=.. with the challenge's scope and ours.
  CURL* h = acquire();
  auto escape = [&](const std::string& s) {
    char* e = curl_easy_escape(h, s.data(), static_cast<int>(s.size()));
    std::string out = e ? e : "";
    curl_free(e);
    return out;
  };
  std::string url = realm;
  char sep = realm.find('?') == std::string::npos ? '?' : '&';
  if (std::string service = param("service"); !service.empty()) {
    url += sep + ("service=" + escape(service));
    sep = '&';
  }
  std::string asked = param("scope");
  for (const std::string& s : {asked, scope == asked ? "" : scope}) {
    if (s.empty())
      continue;
    url += sep + ("scope=" + escape(s));
    sep = '&';
  }
  release(h);

  request rq;
  rq.url = url;
  rq.authenticate = false;
  rq.send_credentials = true;
  rq.max_body = 1 << 20;
  response rs;
  std::string what = "requesting bearer token from " + realm + ": ";
  if (!perform(rq, rs, err)) {
    err = what + err;
    return false;
  }
  if (rs.status != 200) {
    err = what + registry_error_reason(rs.status, rs.body);
    return false;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (!parser.parse(rs.body).get(doc)) {
    token = json_string(doc, "token");
    if (token.empty())
      token = json_string(doc, "access_token");
  }
  if (token.empty())
    err = what + "the answer holds no token";
  return !token.empty();
}

bool registry_client::impl::download_blob(
    const std::string& repository, const std::string& digest,
    const std::function<bool(const char*, size_t, uint64_t, std::string&)>&
        consume,
    const std::function<bool(std::string&)>& restart, std::string& err) {
  std::string what = "fetching blob " + digest + " from " + name(repository);
  if (!valid_repository(repository) || !valid_digest(digest)) {
    err = what + ": invalid repository or digest";
    return false;
  }
  sha256 hash;
  uint64_t received = 0;
  request rq;
  rq.path = "/v2/" + repository + "/blobs/" + digest;
  rq.scope = pull_scope(repository);
  rq.sink = [&](const char* p, size_t n, const response& rs) {
    hash.update(p, n);
    received += n;
    return consume(p, n, rs.content_length, rq.failure);
  };
  rq.rewind = [&](std::string& why) {
    if (received == 0)
      return true;
    hash = sha256();
    received = 0;
    return restart(why);
  };

  response rs;
  if (!perform(rq, rs, err)) {
    err = what + ": " + err;
    return false;
  }
  if (rs.status != 200) {
    err = what + ": " + registry_error_reason(rs.status, rs.body);
    return false;
  }
  if (std::string got = hash.digest(); got != digest) {
    err = "blob " + digest + ": digest mismatch, got " + got;
    return false;
  }
  return true;
}

// POST for an upload session, then one PUT of the whole blob.
bool registry_client::impl::upload_blob(const std::string& repository,
                                        const std::string& digest, request& put,
                                        std::string& err) {
  std::string what = "pushing blob " + digest + " to " + name(repository);
  if (!valid_repository(repository) || !valid_digest(digest)) {
    err = what + ": invalid repository or digest";
    return false;
  }
  request head;
  head.method = "HEAD";
  head.path = "/v2/" + repository + "/blobs/" + digest;
  head.scope = push_scope(repository);
  response rs;
  if (!perform(head, rs, err)) {
    err = what + ": " + err;
    return false;
  }
  if (rs.status == 200)
    return true;

  request post;
  post.method = "POST";
  post.path = "/v2/" + repository + "/blobs/uploads/";
  post.scope = push_scope(repository);
  if (!perform(post, rs, err)) {
    err = what + ": " + err;
    return false;
  }
  std::string location = rs.header("location");
  if (rs.status != 202 || location.empty()) {
    err = what + ": " +
          (rs.status == 202 ? "the registry gave no upload location"
                            : registry_error_reason(rs.status, rs.body));
    return false;
  }

  put.method = "PUT";
  put.url = absolute(location);
  put.url += put.url.find('?') == std::string::npos ? '?' : '&';
  put.url += "digest=" + digest;
  put.scope = push_scope(repository);
  put.headers.push_back("Content-Type: application/octet-stream");
  if (!perform(put, rs, err)) {
    err = what + ": " + err;
    return false;
  }
  if (rs.status != 201 && rs.status != 204 && rs.status != 200) {
    err = what + ": " + registry_error_reason(rs.status, rs.body);
    return false;
  }
  return true;
}

// GETs of a JSON list under `key`, following Link headers.
bool registry_client::impl::list(request& rq, const char* key,
                                 std::vector<std::string>& out, size_t limit,
                                 std::string& err) {
  out.clear();
  while (true) {
    response rs;
    if (!perform(rq, rs, err))
      return false;
    if (rs.status != 200) {
      err = registry_error_reason(rs.status, rs.body);
      return false;
    }
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(rs.body).get(doc)) {
      err = "the answer is not JSON";
      return false;
    }
    simdjson::dom::array items;
    if (doc[key].get(items) == simdjson::SUCCESS) {
      for (auto item : items) {
        std::string_view s;
        if (item.get(s) == simdjson::SUCCESS)
          out.emplace_back(s);
        if (limit && out.size() >= limit)
          return true;
      }
    }
    std::string next = next_link(rs.header("link"));
    if (next.empty())
      return true;
    rq.url = absolute(next);
  }
}

registry_client::registry_client(std::string registry,
                                 registry_options options) {
  init_curl_once();
  impl_ = std::make_unique<impl>(std::move(registry), std::move(options));
}

registry_client::~registry_client() = default;

const std::string& registry_client::registry() const {
  return impl_->registry;
}

std::string registry_client::base_url() const {
  return impl_->base_url();
}

bool registry_client::ping(std::string& err) {
  request rq;
  rq.path = "/v2/";
  rq.authenticate = false;
  response rs;
  std::string what = "pinging container registry " + impl_->registry + ": ";
  if (!impl_->perform(rq, rs, err)) {
    err = what + err;
    return false;
  }
  if (rs.status != 200 && rs.status != 401) {
    err = what + registry_error_reason(rs.status, rs.body);
    return false;
  }
  return true;
}

bool registry_client::get_manifest_raw(const std::string& repository,
                                       const std::string& ref, manifest& out,
                                       std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "reading manifest " + ref + " in " + impl_->name(repository) + ": " +
          why;
    return false;
  };
  bool by_digest = valid_digest(ref);
  if (!valid_repository(repository) || !(by_digest || valid_tag(ref)))
    return fail("invalid repository, tag or digest");
  request rq;
  rq.path = "/v2/" + repository + "/manifests/" + ref;
  rq.scope = pull_scope(repository);
  rq.headers.push_back(manifest_accept);
  rq.max_body = max_manifest_size;
  response rs;
  if (!impl_->perform(rq, rs, err))
    return fail(err);
  if (rs.status != 200)
    return fail(registry_error_reason(rs.status, rs.body));

  manifest m;
  m.body = std::move(rs.body);
  m.media_type = manifest_type(rs.header("content-type"), m.body);
  if (m.media_type.empty())
    return fail("unsupported manifest type \"" + rs.header("content-type") +
                "\"");
  sha256 hash;
  hash.update(m.body.data(), m.body.size());
  m.digest = hash.digest();
  if (by_digest && m.digest != ref)
    return fail("digest mismatch, got " + m.digest);
  out = std::move(m);
  return true;
}

bool registry_client::get_manifest(const std::string& repository,
                                   const std::string& ref, manifest& out,
                                   std::string& err) {
  manifest list;
  if (!get_manifest_raw(repository, ref, list, err))
    return false;
  if (!is_index_type(list.media_type)) {
    out = std::move(list);
    return true;
  }
  std::string digest, type;
  if (!choose_platform_manifest(list.body, impl_->opt.platform, digest, type,
                                err)) {
    err = "choosing an image from manifest list " + ref + " in " +
          impl_->name(repository) + ": " + err;
    return false;
  }
  manifest m;
  if (!get_manifest_raw(repository, digest, m, err))
    return false;
  if (is_index_type(m.media_type)) {
    err = "reading manifest " + digest + " in " + impl_->name(repository) +
          ": a manifest list names another list for its platform";
    return false;
  }
  m.index_digest = list.digest;
  out = std::move(m);
  return true;
}

bool registry_client::fetch_blob(const std::string& repository,
                                 const std::string& digest, int fd,
                                 const transfer_progress& progress,
                                 std::string& err, const blob_tap* tap) {
  off_t start = ::lseek(fd, 0, SEEK_CUR);
  uint64_t done = 0;
  auto consume = [&](const char* p, size_t n, uint64_t total,
                     std::string& why) {
    if (!write_all(fd, p, n)) {
      why = std::string("writing: ") + std::strerror(errno);
      return false;
    }
    if (tap && tap->chunk)
      tap->chunk(p, n);
    done += n;
    if (progress && !progress(done, total)) {
      why = "cancelled";
      return false;
    }
    return true;
  };
  auto restart = [&](std::string& why) {
    done = 0;
    if (tap && tap->rewound)
      tap->rewound();
    if (start >= 0 && ::lseek(fd, start, SEEK_SET) == start &&
        ::ftruncate(fd, start) == 0)
      return true;
    why = "cannot retry the transfer: the output cannot be rewound";
    return false;
  };
  return impl_->download_blob(repository, digest, consume, restart, err);
}

bool registry_client::get_blob(const std::string& repository,
                               const std::string& digest, std::string& out,
                               std::string& err, size_t max_size) {
  std::string body;
  auto consume = [&](const char* p, size_t n, uint64_t, std::string& why) {
    if (body.size() + n > max_size) {
      why = "blob larger than " + std::to_string(max_size) + " bytes";
      return false;
    }
    body.append(p, n);
    return true;
  };
  auto restart = [&](std::string&) {
    body.clear();
    return true;
  };
  if (!impl_->download_blob(repository, digest, consume, restart, err))
    return false;
  out = std::move(body);
  return true;
}

bool registry_client::blob_exists(const std::string& repository,
                                  const std::string& digest, bool& exists,
                                  std::string& err) {
  std::string what =
      "checking blob " + digest + " in " + impl_->name(repository) + ": ";
  if (!valid_repository(repository) || !valid_digest(digest)) {
    err = what + "invalid repository or digest";
    return false;
  }
  request rq;
  rq.method = "HEAD";
  rq.path = "/v2/" + repository + "/blobs/" + digest;
  rq.scope = pull_scope(repository);
  response rs;
  if (!impl_->perform(rq, rs, err)) {
    err = what + err;
    return false;
  }
  if (rs.status != 200 && rs.status != 404) {
    err = what + registry_error_reason(rs.status, rs.body);
    return false;
  }
  exists = rs.status == 200;
  return true;
}

bool registry_client::push_blob(const std::string& repository,
                                const std::string& digest, int fd,
                                uint64_t size,
                                const transfer_progress& progress,
                                std::string& err) {
  request put;
  put.upload_fd = fd;
  put.upload_size = size;
  put.upload_progress = &progress;
  if (!impl_->upload_blob(repository, digest, put, err))
    return false;
  if (progress)
    progress(size, size);
  return true;
}

bool registry_client::push_blob(const std::string& repository,
                                const std::string& digest,
                                std::string_view data, std::string& err) {
  request put;
  put.upload = data;
  put.upload_size = data.size();
  return impl_->upload_blob(repository, digest, put, err);
}

bool registry_client::put_manifest(const std::string& repository,
                                   const std::string& ref,
                                   const std::string& media_type,
                                   const std::string& body, std::string& err) {
  std::string what =
      "writing manifest " + ref + " to " + impl_->name(repository) + ": ";
  if (!valid_repository(repository) || !(valid_digest(ref) || valid_tag(ref))) {
    err = what + "invalid repository, tag or digest";
    return false;
  }
  request rq;
  rq.method = "PUT";
  rq.path = "/v2/" + repository + "/manifests/" + ref;
  rq.scope = push_scope(repository);
  rq.headers.push_back("Content-Type: " + media_type);
  rq.upload = body;
  rq.upload_size = body.size();
  response rs;
  if (!impl_->perform(rq, rs, err)) {
    err = what + err;
    return false;
  }
  if (rs.status != 201 && rs.status != 200 && rs.status != 204) {
    err = what + registry_error_reason(rs.status, rs.body);
    return false;
  }
  return true;
}

bool registry_client::catalog(std::vector<std::string>& repositories, int limit,
                              std::string& err) {
  request rq;
  int page = limit > 0 ? std::min(limit, catalog_page) : catalog_page;
  rq.path = "/v2/_catalog?n=" + std::to_string(page);
  rq.scope = "registry:catalog:*";
  if (impl_->list(rq, "repositories", repositories,
                  limit > 0 ? static_cast<size_t>(limit) : 0, err))
    return true;
  err = "listing repositories in " + impl_->registry + ": " + err;
  return false;
}

bool registry_client::tags(const std::string& repository,
                           std::vector<std::string>& out, std::string& err) {
  std::string what = "listing tags of " + impl_->name(repository) + ": ";
  if (!valid_repository(repository)) {
    err = what + "invalid repository";
    return false;
  }
  request rq;
  rq.path = "/v2/" + repository + "/tags/list";
  rq.scope = pull_scope(repository);
  if (impl_->list(rq, "tags", out, 0, err))
    return true;
  err = what + err;
  return false;
}

registry_options options_for_registry(
    const std::string& registry, std::optional<bool> tls_verify,
    const std::vector<std::string>& insecure_registries,
    const std::string& creds, const std::string& cert_dir) {
  registry_options opts;
  bool listed = std::find(insecure_registries.begin(),
                          insecure_registries.end(),
                          registry) != insecure_registries.end();
  opts.tls_verify = tls_verify.value_or(!listed);
  opts.cert_dir = cert_dir;
  auto colon = creds.find(':');
  opts.username = creds.substr(0, colon);
  if (colon != std::string::npos)
    opts.password = creds.substr(colon + 1);
  return opts;
}

} // namespace berth::storage
