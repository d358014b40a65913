// The code generated from the IDL files: method tables, and a decode/encode
// round trip of every type, driven by the interface description served.
#define BOOST_TEST_MODULE interfaces
#include <boost/test/unit_test.hpp>

#include "protocol/gen/io_podman.hpp"
#include "protocol/gen/org_varlink_certification.hpp"
#include "protocol/gen/org_varlink_service.hpp"
#include "protocol/json_decode.hpp"

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace json = berth::json;
namespace rpc = berth::rpc;

// --- the generated types, by interface ---------------------------------------
//
// C++ cannot enumerate a namespace, so the names are listed here; the tests
// check these lists against the types parsed from each description, so an
// interface change that is not reflected here fails instead of going
// untested.

#define PODMAN_TYPES(X)                                                        \
  X(BuildInfo) X(BuildOptions) X(Container) X(ContainerChanges)                \
  X(ContainerMount) X(ContainerNameSpace) X(ContainerNotFound)                 \
  X(ContainerPortMappings) X(ContainerStats) X(Create)                         \
  X(CreateResourceConfig) X(ErrorOccurred) X(IDMap) X(IDMappingOptions)        \
  X(Image) X(ImageHistory) X(ImageNotFound) X(ImageSaveOptions)                \
  X(ImageSearchFilter) X(ImageSearchResult) X(InfoDistribution)                \
  X(InfoGraphStatus) X(InfoHost) X(InfoPodmanBinary) X(InfoStore)              \
  X(ListPodContainerInfo) X(ListPodData) X(MoreResponse)                       \
  X(NoContainerRunning) X(NoContainersInPod) X(NotImplemented)                 \
  X(PodContainerError) X(PodContainerErrorData) X(PodCreate)                   \
  X(PodNotFound) X(PodmanInfo) X(Runlabel) X(RuntimeError) X(Sockets)          \
  X(StringResponse) X(Volume) X(VolumeCreateOpts) X(VolumeNotFound)            \
  X(VolumeRemoveOpts)

#define PODMAN_METHODS(X)                                                      \
  X(Attach) X(BuildImage) X(Commit) X(ContainerArtifacts)                      \
  X(ContainerCheckpoint)                                                       \
  X(ContainerConfig) X(ContainerExists) X(ContainerInspectData)                \
  X(ContainerRestore) X(ContainerRunlabel) X(ContainerStateData)               \
  X(CreateContainer) X(CreatePod) X(DeleteStoppedContainers)                   \
  X(DeleteUnusedImages) X(ExportContainer) X(ExportImage)                      \
  X(GetAttachSockets) X(GetContainer) X(GetContainerLogs)                      \
  X(GetContainerStats) X(GetContainerStatsWithHistory)                         \
  X(GetContainersByContext) X(GetImage) X(GetInfo) X(GetPod)                   \
  X(GetPodStats) X(GetPodsByContext) X(GetVersion) X(GetVolumes)               \
  X(HistoryImage) X(ImageExists) X(ImageSave) X(ImagesPrune)                   \
  X(ImportImage) X(InspectContainer) X(InspectImage) X(InspectPod)             \
  X(KillContainer) X(KillPod) X(ListContainerChanges)                          \
  X(ListContainerMounts) X(ListContainerProcesses) X(ListContainers)           \
  X(ListImages) X(ListPods) X(LoadImage) X(MountContainer)                     \
  X(PauseContainer) X(PausePod) X(PodStateData) X(PullImage)                   \
  X(PushImage) X(ReceiveFile) X(RemoveContainer) X(RemoveImage)                \
  X(RemovePod) X(RestartContainer) X(RestartPod) X(SearchImages)               \
  X(SendFile) X(StartContainer) X(StartPod) X(StopContainer) X(StopPod)        \
  X(TagImage) X(TopPod) X(UnmountContainer) X(UnpauseContainer)                \
  X(UnpausePod) X(VolumeCreate) X(VolumeRemove) X(VolumesPrune)                \
  X(WaitContainer)

#define CERT_TYPES(X)                                                          \
  X(CertificationError) X(ClientIdError) X(Interface) X(Interface_anon)        \
  X(Interface_foo) X(MyType) X(MyType_enum) X(MyType_nullable_array_struct)    \
  X(MyType_struct) X(Test06_out_struct) X(Test07_in_struct)

#define CERT_METHODS(X)                                                        \
  X(End) X(Start) X(Test01) X(Test02) X(Test03) X(Test04) X(Test05)            \
  X(Test06) X(Test07) X(Test08) X(Test09) X(Test10) X(Test11)

#define VSVC_TYPES(X)                                                          \
  X(ExpectedMore) X(InterfaceNotFound) X(InvalidParameter) X(MethodNotFound)   \
  X(MethodNotImplemented) X(PermissionDenied)

#define VSVC_METHODS(X) X(GetInfo) X(GetInterfaceDescription)

// The decoders of named types are defined with external linkage in the
// generated sources but only declared there: declare them for the tests.
#define DECLARE_DECODE(T)                                                      \
  bool decode(const json::element& e, T& v, json::path& p,                     \
              json::decode_error& err);
#define DECLARE_METHOD_DECODE(M) DECLARE_DECODE(M##_in) DECLARE_DECODE(M##_out)

namespace berth::podman {
PODMAN_TYPES(DECLARE_DECODE)
PODMAN_METHODS(DECLARE_METHOD_DECODE)
} // namespace berth::podman

namespace berth::cert {
CERT_TYPES(DECLARE_DECODE)
CERT_METHODS(DECLARE_METHOD_DECODE)
} // namespace berth::cert

namespace berth::vsvc {
VSVC_TYPES(DECLARE_DECODE)
VSVC_METHODS(DECLARE_METHOD_DECODE)
} // namespace berth::vsvc

namespace {

// --- a strict reader of the interface description ---------------------------

struct idl_type;
using type_ptr = std::shared_ptr<const idl_type>;

struct idl_type {
  enum kind_t { boolean, integer, floating, string, object, set, ref, maybe,
                array, map };
  kind_t kind;
  std::string name; // of a `ref`: the C++ name of the definition
  type_ptr inner;   // of maybe, array and map
};

struct idl_def {
  bool is_enum = false;
  std::vector<std::pair<std::string, type_ptr>> fields;
  std::vector<std::string> values;
};

// Everything the generator turns into C++, by C++ name: named types,
// anonymous ones (`Owner_field`), method inputs and outputs, and errors.
struct idl_model {
  std::string name;
  std::vector<std::string> types, methods, errors;
  std::map<std::string, idl_def> defs;
  std::set<std::string> refs; // named types used somewhere
};

struct idl_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct token {
  std::string kind; // word, ->, [string], [], or one of (),:?
  std::string text;
  int line;
};

std::vector<token> tokenize(std::string_view s) {
  std::vector<token> out;
  int line = 1;
  size_t i = 0;
  auto is_word = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
           c == '.' || c == '-';
  };
  while (i < s.size()) {
    char c = s[i];
    if (c == '\n') {
      ++line;
      ++i;
    } else if (c == ' ' || c == '\t' || c == '\r') {
      ++i;
    } else if (c == '#') {
      while (i < s.size() && s[i] != '\n')
        ++i;
    } else if (s.substr(i, 2) == "->") {
      out.push_back({"->", "->", line});
      i += 2;
    } else if (s.substr(i, 8) == "[string]") {
      out.push_back({"[string]", "[string]", line});
      i += 8;
    } else if (s.substr(i, 2) == "[]") {
      out.push_back({"[]", "[]", line});
      i += 2;
    } else if (std::string_view{"(),:?"}.find(c) != std::string_view::npos) {
      out.push_back({std::string(1, c), std::string(1, c), line});
      ++i;
    } else if (is_word(c)) {
      size_t start = i;
      while (i < s.size() && is_word(s[i]))
        ++i;
      out.push_back({"word", std::string{s.substr(start, i - start)}, line});
    } else {
      throw idl_error("line " + std::to_string(line) + ": unexpected '" +
                      std::string(1, c) + "'");
    }
  }
  out.push_back({"eof", "", line});
  return out;
}

class idl_parser {
public:
  explicit idl_parser(std::string_view text) : toks_(tokenize(text)) {
  }

  idl_model parse() {
    expect("word", "interface");
    m_.name = word(interface_re(), "interface name");
    std::set<std::string> members;
    while (peek().kind != "eof") {
      auto kw = expect("word");
      auto name = word(member_re(), "member name");
      if (!members.insert(name).second)
        fail(kw, name + " is defined twice");
      if (kw.text == "type") {
        m_.types.push_back(name);
        add(name, struct_or_enum(name));
      } else if (kw.text == "method") {
        m_.methods.push_back(name);
        add(name + "_in", structure(name + "_in"));
        expect("->");
        add(name + "_out", structure(name + "_out"));
      } else if (kw.text == "error") {
        m_.errors.push_back(name);
        add(name, structure(name));
      } else {
        fail(kw, "unexpected '" + kw.text + "'");
      }
    }
    for (auto& r : m_.refs)
      if (std::find(m_.types.begin(), m_.types.end(), r) == m_.types.end())
        throw idl_error("type " + r + " is used but not defined");
    return std::move(m_);
  }

private:
  static const std::regex& interface_re() {
    static const std::regex re{
        "[A-Za-z](-*[A-Za-z0-9])*(\\.[A-Za-z0-9](-*[A-Za-z0-9])*)+"};
    return re;
  }
  static const std::regex& member_re() {
    static const std::regex re{"[A-Z][A-Za-z0-9]*"};
    return re;
  }
  static const std::regex& field_re() {
    static const std::regex re{"[A-Za-z](_?[A-Za-z0-9])*"};
    return re;
  }

  [[noreturn]] void fail(const token& t, const std::string& what) {
    throw idl_error("line " + std::to_string(t.line) + ": " + what);
  }
  const token& peek(size_t k = 0) const {
    return toks_[std::min(i_ + k, toks_.size() - 1)];
  }
  token expect(const std::string& kind, const std::string& text = {}) {
    auto t = peek();
    if (t.kind != kind || (!text.empty() && t.text != text))
      fail(t, "expected '" + (text.empty() ? kind : text) + "', got '" +
                  t.text + "'");
    ++i_;
    return t;
  }
  std::string word(const std::regex& re, const std::string& what) {
    auto t = expect("word");
    if (!std::regex_match(t.text, re))
      fail(t, "invalid " + what + " '" + t.text + "'");
    return t.text;
  }

  void add(const std::string& name, idl_def def) {
    if (!m_.defs.emplace(name, std::move(def)).second)
      throw idl_error("C++ name " + name + " is generated twice");
  }

  // `(a, b)` is an enum; `(a: T)` and `()` are structs.
  idl_def struct_or_enum(const std::string& name) {
    if (peek().kind == "(" && peek(1).kind == "word" &&
        (peek(2).kind == "," || peek(2).kind == ")"))
      return enumeration();
    return structure(name);
  }

  idl_def enumeration() {
    idl_def d;
    d.is_enum = true;
    expect("(");
    d.values.push_back(word(field_re(), "enum value"));
    while (peek().kind == ",") {
      ++i_;
      d.values.push_back(word(field_re(), "enum value"));
    }
    expect(")");
    std::set<std::string> unique(d.values.begin(), d.values.end());
    if (unique.size() != d.values.size())
      fail(peek(), "duplicate enum value");
    return d;
  }

  idl_def structure(const std::string& name) {
    idl_def d;
    expect("(");
    std::set<std::string> names;
    if (peek().kind != ")") {
      for (;;) {
        auto t = peek();
        auto field = word(field_re(), "field name");
        if (!names.insert(field).second)
          fail(t, "duplicate field " + field);
        expect(":");
        d.fields.emplace_back(field, type(name + "_" + field, true));
        if (peek().kind != ",")
          break;
        ++i_;
      }
    }
    expect(")");
    return d;
  }

  // `anon` names an inline struct or enum met here.
  type_ptr type(const std::string& anon, bool maybe_ok) {
    auto t = peek();
    auto make = [](idl_type::kind_t k, type_ptr inner = nullptr,
                   std::string name = {}) {
      return std::make_shared<const idl_type>(
          idl_type{k, std::move(name), std::move(inner)});
    };
    if (t.kind == "?") {
      if (!maybe_ok)
        fail(t, "a maybe of a maybe is not a type");
      ++i_;
      return make(idl_type::maybe, type(anon, false));
    }
    if (t.kind == "[]") {
      ++i_;
      return make(idl_type::array, type(anon, true));
    }
    if (t.kind == "[string]") {
      ++i_;
      if (peek().kind == "(" && peek(1).kind == ")") {
        i_ += 2;
        return make(idl_type::set);
      }
      return make(idl_type::map, type(anon, true));
    }
    if (t.kind == "(") {
      add(anon, struct_or_enum(anon));
      return make(idl_type::ref, nullptr, anon);
    }
    auto w = expect("word").text;
    static const std::map<std::string, idl_type::kind_t> scalars{
        {"bool", idl_type::boolean}, {"int", idl_type::integer},
        {"float", idl_type::floating}, {"string", idl_type::string},
        {"object", idl_type::object}};
    if (auto it = scalars.find(w); it != scalars.end())
      return make(it->second);
    if (!std::regex_match(w, member_re()))
      fail(t, "invalid type name '" + w + "'");
    m_.refs.insert(w);
    return make(idl_type::ref, nullptr, w);
  }

  std::vector<token> toks_;
  size_t i_ = 0;
  idl_model m_;
};

// --- sample values ----------------------------------------------------------

// Builds JSON text with a non-default value in every field, varying the
// values so that a decoder mixing fields up is noticed.
class sampler {
public:
  explicit sampler(const idl_model& m) : m_(m) {
  }

  std::string def(const std::string& name) {
    auto& d = m_.defs.at(name);
    if (d.is_enum) {
      // The first value is the C++ default: prefer the others.
      auto n = next();
      auto i = d.values.size() > 1 ? 1 + n % (d.values.size() - 1) : 0;
      return '"' + d.values[i] + '"';
    }
    std::string s = "{";
    for (auto& [field, t] : d.fields) {
      if (s.size() > 1)
        s += ',';
      s += '"' + field + "\":" + value(*t);
    }
    return s + '}';
  }

  std::string value(const idl_type& t) {
    auto n = next();
    auto ns = std::to_string(n);
    switch (t.kind) {
      case idl_type::boolean:
        return "true";
      case idl_type::integer: {
        static const char* const edge[] = {
            "9223372036854775807", "-9223372036854775808", "-1", "1"};
        return n % 5 == 4 ? edge[n / 5 % 4] : std::to_string(n * 7919 + 2);
      }
      case idl_type::floating: {
        // Integer literals are valid floats too.
        static const char* const edge[] = {"3.141592653589793", "-0.5",
                                           "1e-300", "42",
                                           "1.7976931348623157e308"};
        return n % 3 == 2 ? edge[n / 3 % 5] : ns + ".25";
      }
      case idl_type::string:
        return "\"s" + ns + R"( \"q\" \\ \u00e9 ✓ \n\t\u0001 /\/")";
      case idl_type::object:
        return R"({"k)" + ns +
               R"(":[1,2.5,"x",null,true,{"n":{}}],"e":{},"u":"\u00fc"})";
      case idl_type::set:
        return "{\"a" + ns + "\":{},\"b" + ns + "\":{}}";
      case idl_type::ref:
        return def(t.name);
      case idl_type::maybe:
        return value(*t.inner);
      case idl_type::array: {
        auto second = t.inner->kind == idl_type::maybe ? std::string{"null"}
                                                        : value(*t.inner);
        return '[' + value(*t.inner) + ',' + second + ']';
      }
      case idl_type::map:
        return "{\"k" + ns + "a\":" + value(*t.inner) + ",\"k" + ns +
               "b\":" + value(*t.inner) + '}';
    }
    return "null";
  }

private:
  size_t next() { return ++count_; }
  const idl_model& m_;
  size_t count_ = 0;
};

// --- round trips ------------------------------------------------------------

// Decodes `e` into a T, encodes it into `out`; false with a reason in `err`.
using round_trip_fn = bool (*)(const json::element& e, std::string& out,
                               std::string& err);

// A parsed document that outlives the call that parsed it.
struct parsed {
  simdjson::dom::parser parser;
  simdjson::padded_string text;
  json::element root;
  bool ok = false;
  explicit parsed(const std::string& s) : text(s) {
    ok = parser.parse(text).get(root) == simdjson::SUCCESS;
  }
};

template <class T>
bool round_trip(const json::element& e, std::string& out, std::string& err) {
  T v{};
  json::path p;
  json::decode_error de;
  if (!decode(e, v, p, de)) {
    err = "decode failed at '" + de.field + "'";
    return false;
  }
  json::writer w;
  encode(w, v);
  out = w.take();
  // The encoding decodes to the same value.
  parsed again{out};
  if (!again.ok) {
    err = "the encoding is not JSON";
    return false;
  }
  T v2{};
  json::path p2;
  if (!decode(again.root, v2, p2, de) || !(v2 == v)) {
    err = "decoding the encoding gives another value";
    return false;
  }
  return true;
}

// The same through the method table: decode the `parameters` of a call.
using call_trip_fn = bool (*)(const rpc::interface_info& info,
                              std::string_view method,
                              const json::element* params, std::string& out,
                              std::string& err);

template <class In>
bool call_round_trip(const rpc::interface_info& info, std::string_view method,
                     const json::element* params, std::string& out,
                     std::string& err) {
  auto* m = info.find(method);
  if (m == nullptr) {
    err = "not in the method table";
    return false;
  }
  json::decode_error de;
  auto c = m->decode(params, de);
  if (!c) {
    err = "decode failed at '" + de.field + "'";
    return false;
  }
  auto* typed = dynamic_cast<rpc::typed_call<In>*>(c.get());
  if (typed == nullptr) {
    err = "the call does not carry " + std::string{method} + "_in";
    return false;
  }
  json::writer w;
  encode(w, typed->in);
  out = w.take();
  return true;
}

struct interface_case {
  const rpc::interface_info& info;
  std::map<std::string, round_trip_fn> types;
  std::map<std::string, call_trip_fn> calls;
};

#define TYPE_ENTRY(T) {#T, &round_trip<T>},
#define METHOD_ENTRY(M) {#M "_in", &round_trip<M##_in>}, \
                        {#M "_out", &round_trip<M##_out>},
#define CALL_ENTRY(M) {#M, &call_round_trip<M##_in>},

interface_case podman_case() {
  using namespace berth::podman;
  return {info, {PODMAN_TYPES(TYPE_ENTRY) PODMAN_METHODS(METHOD_ENTRY)},
          {PODMAN_METHODS(CALL_ENTRY)}};
}

interface_case cert_case() {
  using namespace berth::cert;
  return {info, {CERT_TYPES(TYPE_ENTRY) CERT_METHODS(METHOD_ENTRY)},
          {CERT_METHODS(CALL_ENTRY)}};
}

interface_case vsvc_case() {
  using namespace berth::vsvc;
  return {info, {VSVC_TYPES(TYPE_ENTRY) VSVC_METHODS(METHOD_ENTRY)},
          {VSVC_METHODS(CALL_ENTRY)}};
}

idl_model parse_description(const rpc::interface_info& info) {
  try {
    return idl_parser{info.description}.parse();
  } catch (const idl_error& e) {
    BOOST_FAIL("description of " << info.name << ": " << e.what());
  }
  return {};
}

// True if both texts are JSON and mean the same.
bool same_json(const std::string& a, const std::string& b) {
  parsed x{a}, y{b};
  return x.ok && y.ok && json::equal(x.root, y.root);
}

// Every C++ type the description implies has a codec here, and no more.
void check_lists_match(const interface_case& ic, const idl_model& m) {
  std::set<std::string> implied, listed, methods_listed;
  for (auto& [name, def] : m.defs)
    implied.insert(name);
  for (auto& [name, fn] : ic.types)
    listed.insert(name);
  for (auto& n : implied)
    BOOST_TEST(listed.count(n) == 1u, ic.info.name << ": " << n
                                                   << " is not listed");
  for (auto& n : listed)
    BOOST_TEST(implied.count(n) == 1u, ic.info.name << ": " << n
                                                    << " is not described");
  for (auto& [name, fn] : ic.calls)
    methods_listed.insert(name);
  BOOST_TEST(methods_listed ==
                 std::set<std::string>(m.methods.begin(), m.methods.end()),
             boost::test_tools::per_element());
}

void check_type_round_trips(const interface_case& ic) {
  auto m = parse_description(ic.info);
  check_lists_match(ic, m);
  sampler sample{m};
  for (auto& [name, def] : m.defs) {
    auto it = ic.types.find(name);
    if (it == ic.types.end())
      continue;
    auto text = sample.def(name);
    parsed in{text};
    BOOST_TEST_REQUIRE(in.ok, "bad sample for " << name << ": " << text);
    std::string out, err;
    BOOST_TEST_CONTEXT(ic.info.name << "." << name) {
      BOOST_TEST(it->second(in.root, out, err), err << "\n  in:  " << text);
      BOOST_TEST(same_json(text, out), "\n  in:  " << text
                                                   << "\n  out: " << out);
    }
  }
}

void check_call_round_trips(const interface_case& ic) {
  auto m = parse_description(ic.info);
  sampler sample{m};
  for (auto& method : m.methods) {
    auto it = ic.calls.find(method);
    BOOST_TEST_REQUIRE((it != ic.calls.end()), method << " is not listed");
    auto text = sample.def(method + "_in");
    parsed in{text};
    BOOST_TEST_REQUIRE(in.ok, "bad sample for " << method << ": " << text);
    std::string out, err;
    BOOST_TEST_CONTEXT(ic.info.name << "." << method) {
      BOOST_TEST(it->second(ic.info, method, &in.root, out, err), err);
      BOOST_TEST(same_json(text, out), "\n  in:  " << text
                                                   << "\n  out: " << out);
    }
  }
}

void check_method_table(const rpc::interface_info& info) {
  auto methods = info.methods;
  for (size_t i = 0; i < methods.size(); ++i) {
    auto& mi = methods[i];
    BOOST_TEST_CONTEXT(mi.name) {
      BOOST_TEST(mi.index == i);
      BOOST_TEST(mi.full_name == std::string{info.name} + "." +
                                     std::string{mi.name});
      BOOST_TEST(mi.decode != nullptr);
      if (i > 0)
        BOOST_TEST((methods[i - 1].name < mi.name));
      BOOST_TEST(info.find(mi.name) == &mi);
    }
  }
  for (auto unknown : {"", "Nope", "A", "Zzzz", "getVersion", "GetVersionX",
                       "io.podman.GetVersion"})
    BOOST_TEST(info.find(unknown) == nullptr, unknown);
}

// Decodes `text` as the parameters of `method`; the failing path, or
// nullopt if the call decoded.
std::optional<std::string> call_error(const rpc::interface_info& info,
                                      std::string_view method,
                                      const std::string& text) {
  parsed in{text};
  BOOST_TEST_REQUIRE(in.ok, "bad JSON: " << text);
  auto* m = info.find(method);
  BOOST_TEST_REQUIRE(m != nullptr);
  json::decode_error err;
  auto c = m->decode(&in.root, err);
  if (c)
    return std::nullopt;
  return err.field;
}

template <class T>
std::string encode_text(const T& v) {
  json::writer w;
  encode(w, v);
  return w.take();
}

template <class In>
const In* typed_in(const rpc::call_ptr& c) {
  auto* typed = dynamic_cast<rpc::typed_call<In>*>(c.get());
  return typed ? &typed->in : nullptr;
}

} // namespace

// --- io.podman --------------------------------------------------------------

BOOST_AUTO_TEST_CASE(podman_method_table) {
  BOOST_TEST(berth::podman::info.name == "io.podman");
  // The 73 of podman's interface, and Attach (a berth extension).
  BOOST_TEST(berth::podman::info.methods.size() == 74u);
  check_method_table(berth::podman::info);
  BOOST_TEST(berth::podman::info.find("GetVersion") != nullptr);
  BOOST_TEST(berth::podman::info.find("GetVersion")->index ==
             size_t(berth::podman::method::GetVersion));
}

BOOST_AUTO_TEST_CASE(podman_description_parses) {
  auto text = berth::podman::info.description;
  // Comments and blank lines, then the interface keyword.
  std::istringstream lines{std::string{text}};
  std::string line;
  while (std::getline(lines, line))
    if (!line.empty() && line[0] != '#')
      break;
  BOOST_TEST(line == "interface io.podman");

  auto m = parse_description(berth::podman::info);
  BOOST_TEST(m.name == "io.podman");
  BOOST_TEST(m.methods.size() == berth::podman::info.methods.size());
  for (auto& name : m.methods)
    BOOST_TEST(berth::podman::info.find(name) != nullptr, name);
  // Every `method` word at the start of a line is one the parser saw.
  std::regex method_re{"^method ([A-Za-z0-9]+)", std::regex::multiline};
  std::string s{text};
  size_t count = 0;
  for (auto it = std::sregex_iterator(s.begin(), s.end(), method_re);
       it != std::sregex_iterator(); ++it, ++count)
    BOOST_TEST(berth::podman::info.find((*it)[1].str()) != nullptr,
               (*it)[1].str());
  BOOST_TEST(count == m.methods.size());
  BOOST_TEST(m.errors.size() == 9u);
}

BOOST_AUTO_TEST_CASE(every_method_accepts_empty_and_absent_parameters) {
  parsed empty{"{}"}, null{"null"};
  for (auto& mi : berth::podman::info.methods) {
    json::decode_error err;
    BOOST_TEST(mi.decode(nullptr, err) != nullptr, mi.name);
    BOOST_TEST(mi.decode(&empty.root, err) != nullptr, mi.name);
    BOOST_TEST(mi.decode(&null.root, err) != nullptr, mi.name);
  }
}

BOOST_AUTO_TEST_CASE(every_method_rejects_parameters_that_are_no_object) {
  for (auto text : {"[]", "1", "\"x\"", "true"}) {
    parsed bad{text};
    for (auto& mi : berth::podman::info.methods) {
      json::decode_error err;
      BOOST_TEST(mi.decode(&bad.root, err) == nullptr, mi.name << text);
      BOOST_TEST(err.field == "parameters", mi.name << text);
    }
  }
}

BOOST_AUTO_TEST_CASE(podman_every_type_round_trips) {
  check_type_round_trips(podman_case());
}

BOOST_AUTO_TEST_CASE(podman_every_call_round_trips) {
  check_call_round_trips(podman_case());
}

BOOST_AUTO_TEST_CASE(podman_wrong_types_name_the_path) {
  auto& info = berth::podman::info;
  BOOST_TEST(call_error(info, "CreateContainer",
                        R"({"create":{"resources":{"cpus":"x"}}})")
                 .value_or("<decoded>") == "create.resources.cpus");
  BOOST_TEST(call_error(info, "CreateContainer",
                        R"({"create":{"env":{"A":"1","B":2}}})")
                 .value_or("<decoded>") == "create.env.B");
  BOOST_TEST(call_error(info, "CreateContainer",
                        R"({"create":{"command":["a","b",3]}})")
                 .value_or("<decoded>") == "create.command[2]");
  BOOST_TEST(call_error(info, "GetContainer", R"({"id":1})")
                 .value_or("<decoded>") == "id");
  BOOST_TEST(call_error(info, "SearchImages", R"({"limit":1.5})")
                 .value_or("<decoded>") == "limit");
  BOOST_TEST(call_error(info, "SearchImages",
                        R"({"filter":{"is_official":"yes"}})")
                 .value_or("<decoded>") == "filter.is_official");
  BOOST_TEST(call_error(info, "RestartContainer",
                        R"({"timeout":9223372036854775808})")
                 .value_or("<decoded>") == "timeout");
  // Unknown fields are ignored.
  BOOST_TEST(!call_error(info, "GetContainer", R"({"id":"x","extra":[1]})"));
}

BOOST_AUTO_TEST_CASE(podman_decoded_values_land_in_their_fields) {
  parsed in{R"({"query":"alpine","limit":5,"tlsVerify":false,)"
            R"("filter":{"is_official":true,"star_count":3}})"};
  json::decode_error err;
  auto c = berth::podman::info.find("SearchImages")->decode(&in.root, err);
  auto* v = typed_in<berth::podman::SearchImages_in>(c);
  BOOST_TEST_REQUIRE(v != nullptr);
  BOOST_TEST(v->query == "alpine");
  BOOST_TEST(v->limit.value_or(-1) == 5);
  BOOST_TEST_REQUIRE(v->tlsVerify.has_value());
  BOOST_TEST(!*v->tlsVerify);
  BOOST_TEST(v->filter.is_official.value_or(false));
  BOOST_TEST(!v->filter.is_automated.has_value());
  BOOST_TEST(v->filter.star_count == 3);
}

BOOST_AUTO_TEST_CASE(podman_absent_maybe_stays_absent) {
  parsed in{R"({"query":"alpine","tlsVerify":null})"};
  json::decode_error err;
  auto c = berth::podman::info.find("SearchImages")->decode(&in.root, err);
  auto* v = typed_in<berth::podman::SearchImages_in>(c);
  BOOST_TEST_REQUIRE(v != nullptr);
  BOOST_TEST(!v->limit.has_value());
  BOOST_TEST(!v->tlsVerify.has_value());
  BOOST_TEST(encode_text(*v) ==
             R"({"query":"alpine","filter":{"star_count":0}})");
  // Present but false or zero is still present.
  berth::podman::SearchImages_in set;
  set.limit = 0;
  set.tlsVerify = false;
  BOOST_TEST(encode_text(set) == R"({"query":"","limit":0,"tlsVerify":false,)"
                                 R"("filter":{"star_count":0}})");
}

// --- org.varlink.certification ----------------------------------------------

BOOST_AUTO_TEST_CASE(certification_method_table) {
  BOOST_TEST(berth::cert::info.methods.size() == 13u);
  check_method_table(berth::cert::info);
}

BOOST_AUTO_TEST_CASE(certification_every_type_round_trips) {
  check_type_round_trips(cert_case());
}

BOOST_AUTO_TEST_CASE(certification_every_call_round_trips) {
  check_call_round_trips(cert_case());
}

BOOST_AUTO_TEST_CASE(certification_mytype_round_trips) {
  auto text = std::string{R"({
    "object": {"method": "org.varlink.certification.Test09", "n": [1, 2.5]},
    "enum": "two",
    "struct": {"first": 1, "second": "2"},
    "array": ["one", "two", "three"],
    "dictionary": {"foo": "Foo", "bar": "Bar"},
    "stringset": {"one": {}, "two": {}, "three": {}},
    "nullable": "x",
    "nullable_array_struct": [{"first": 1, "second": "1"},
                              {"first": -2, "second": ""}],
    "interface": {
      "foo": [null, {"foo": "foo", "bar": "bar"}, null, {"one": "baz"}],
      "anon": {"foo": true, "bar": false}
    }
  })"};
  parsed in{text};
  BOOST_TEST_REQUIRE(in.ok);
  berth::cert::MyType v;
  json::path p;
  json::decode_error err;
  BOOST_TEST_REQUIRE(decode(in.root, v, p, err), err.field);
  BOOST_TEST((v.enum_ == berth::cert::MyType_enum::two));
  BOOST_TEST(v.struct_.first == 1);
  BOOST_TEST(v.array.size() == 3u);
  BOOST_TEST(v.stringset.count("three") == 1u);
  BOOST_TEST(v.nullable.value_or("") == "x");
  BOOST_TEST_REQUIRE(v.nullable_array_struct.has_value());
  BOOST_TEST(v.nullable_array_struct->at(1).first == -2);
  BOOST_TEST_REQUIRE(v.interface_.foo.has_value());
  auto& foo = *v.interface_.foo;
  BOOST_TEST_REQUIRE(foo.size() == 4u);
  BOOST_TEST(!foo[0].has_value());
  BOOST_TEST((foo[1].value().at("bar") == berth::cert::Interface_foo::bar));
  BOOST_TEST((foo[3].value().at("one") == berth::cert::Interface_foo::baz));
  BOOST_TEST(v.interface_.anon.foo);
  BOOST_TEST(!v.interface_.anon.bar);
  BOOST_TEST(same_json(encode_text(v), text), encode_text(v));

  // Through the method table, as Test10's input.
  auto call = R"({"client_id":"c","mytype":)" + text + "}";
  parsed in10{call};
  auto c = berth::cert::info.find("Test10")->decode(&in10.root, err);
  auto* t10 = typed_in<berth::cert::Test10_in>(c);
  BOOST_TEST_REQUIRE(t10 != nullptr);
  BOOST_TEST((t10->mytype == v));
  BOOST_TEST(same_json(encode_text(*t10), call));
}

BOOST_AUTO_TEST_CASE(certification_enum_rejects_unknown_values) {
  auto& info = berth::cert::info;
  BOOST_TEST(call_error(info, "Test10", R"({"mytype":{"enum":"four"}})")
                 .value_or("<decoded>") == "mytype.enum");
  BOOST_TEST(call_error(info, "Test10", R"({"mytype":{"enum":"One"}})")
                 .value_or("<decoded>") == "mytype.enum");
  BOOST_TEST(call_error(info, "Test10", R"({"mytype":{"enum":1}})")
                 .value_or("<decoded>") == "mytype.enum");
  BOOST_TEST(call_error(info, "Test10",
                        R"({"mytype":{"interface":{"foo":[{"a":"qux"}]}}})")
                 .value_or("<decoded>") == "mytype.interface.foo[0].a");
  BOOST_TEST(!call_error(info, "Test10", R"({"mytype":{"enum":"three"}})"));
}

BOOST_AUTO_TEST_CASE(certification_absent_maybe_stays_absent) {
  for (auto text :
       {"{}", R"({"nullable":null,"nullable_array_struct":null})"}) {
    parsed in{text};
    berth::cert::MyType v;
    v.nullable = "stale";
    json::path p;
    json::decode_error err;
    BOOST_TEST_REQUIRE(decode(in.root, v, p, err));
    BOOST_TEST(!v.nullable.has_value());
    BOOST_TEST(!v.nullable_array_struct.has_value());
    BOOST_TEST(!v.interface_.foo.has_value());
    auto out = encode_text(v);
    BOOST_TEST(out.find("nullable") == std::string::npos, out);
    BOOST_TEST(out.find("\"foo\":") == out.find("\"foo\":false"), out);
  }
  // An empty string and an empty array are values, not absence.
  berth::cert::MyType v;
  v.nullable = "";
  v.nullable_array_struct.emplace();
  auto out = encode_text(v);
  BOOST_TEST(out.find(R"("nullable":"")") != std::string::npos, out);
  BOOST_TEST(out.find(R"("nullable_array_struct":[])") != std::string::npos,
             out);
}

BOOST_AUTO_TEST_CASE(certification_description_parses) {
  auto m = parse_description(berth::cert::info);
  BOOST_TEST(m.name == "org.varlink.certification");
  BOOST_TEST(m.defs.at("Interface_foo").is_enum);
  BOOST_TEST(m.defs.at("MyType_enum").values ==
                 (std::vector<std::string>{"one", "two", "three"}),
             boost::test_tools::per_element());
}

// --- org.varlink.service ----------------------------------------------------

BOOST_AUTO_TEST_CASE(service_interface) {
  BOOST_TEST(berth::vsvc::info.name == "org.varlink.service");
  BOOST_TEST(berth::vsvc::info.methods.size() == 2u);
  check_method_table(berth::vsvc::info);
  check_type_round_trips(vsvc_case());
  check_call_round_trips(vsvc_case());
}

// --- the strict reader itself -----------------------------------------------

BOOST_AUTO_TEST_CASE(idl_reader_rejects_bad_grammar) {
  for (auto text : {
           "interface io",                      // one-part name
           "interface io.x\nmethod lower() -> ()",
           "interface io.x\ntype T (a: ??string)",
           "interface io.x\ntype T (a: Missing)",
           "interface io.x\ntype T (a__b: int)",
           "interface io.x\ntype T (a: int, a: int)",
           "interface io.x\ntype T ()\ntype T ()",
           "interface io.x\nmethod M() (a: int)",
           "interface io.x\ntype T (a: int",
           "interface io.x\ntype T (a: int) $",
           "type T ()",
       }) {
    BOOST_CHECK_THROW(idl_parser{text}.parse(), idl_error);
  }
  auto m = idl_parser{"# c\ninterface a.b\ntype E (x, y)\n"
                      "method M(e: E, s: [string](), o: ?(p: int)) -> ()"}
               .parse();
  BOOST_TEST(m.defs.at("E").is_enum);
  BOOST_TEST(m.defs.count("M_in_o") == 1u);
  BOOST_TEST((m.defs.at("M_in").fields.at(1).second->kind == idl_type::set));
}
