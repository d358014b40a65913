// The JSON writer, semantic equality of foreign objects and the decoding
// helpers the generated interface code builds on.
#define BOOST_TEST_MODULE json
#include <boost/test/unit_test.hpp>

#include "protocol/json.hpp"
#include "protocol/json_decode.hpp"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <numbers>
#include <string>

namespace json = berth::json;
using namespace std::string_literals;

namespace {

std::string write_int(int64_t i) {
  json::writer w;
  w.value(i);
  return w.take();
}

std::string write_double(double d) {
  json::writer w;
  w.value(d);
  return w.take();
}

// Parses `text` as JSON and returns the string it holds.
std::string parse_string(const std::string& text) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded{text};
  std::string_view s;
  auto err = parser.parse(padded).get(s);
  BOOST_TEST_REQUIRE(err == simdjson::SUCCESS, "not a JSON string: " << text);
  return std::string{s};
}

bool valid_json(const std::string& text) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded{text};
  return parser.parse(padded).error() == simdjson::SUCCESS;
}

json::raw raw(std::string text) {
  return json::raw{std::move(text)};
}

// Decodes `text` into `out`; returns the failing path, or "" on success.
template <class T>
std::optional<std::string> decode_text(const std::string& text, T& out) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded{text};
  auto doc = parser.parse(padded);
  BOOST_TEST_REQUIRE(doc.error() == simdjson::SUCCESS, "bad JSON: " << text);
  json::path p;
  json::decode_error err;
  if (json::decode(doc.value(), out, p, err))
    return std::nullopt;
  return err.field;
}

} // namespace

// --- writer -----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(escapes_quote_and_backslash) {
  BOOST_TEST(json::quote("a\"b\\c") == R"("a\"b\\c")");
  BOOST_TEST(json::quote("") == R"("")");
  BOOST_TEST(json::quote("\"") == R"("\"")");
  BOOST_TEST(json::quote("\\\\") == R"("\\\\")");
}

BOOST_AUTO_TEST_CASE(escapes_control_characters) {
  BOOST_TEST(json::quote("\n\r\t") == R"("\n\r\t")");
  BOOST_TEST(json::quote("\x01\x1f") == R"("\u0001\u001f")");
  BOOST_TEST(json::quote("a\0b"s) == R"("a\u0000b")");
  BOOST_TEST(json::quote("\x08\x0c\x1b") == R"("\u0008\u000c\u001b")");
  // DEL is not a control character for JSON.
  BOOST_TEST(json::quote("\x7f") == "\"\x7f\"");
}

BOOST_AUTO_TEST_CASE(every_ascii_character_round_trips) {
  std::string all;
  for (int c = 0; c < 128; ++c)
    all += char(c);
  auto text = json::quote(all);
  BOOST_TEST(parse_string(text) == all);
}

BOOST_AUTO_TEST_CASE(utf8_passes_through) {
  auto s = "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\xb3"s; // café ✓ 🐳
  BOOST_TEST(json::quote(s) == '"' + s + '"');
  BOOST_TEST(parse_string(json::quote(s)) == s);
}

BOOST_AUTO_TEST_CASE(invalid_utf8_still_gives_valid_json) {
  // Log lines and file names are bytes; a reply must stay parseable JSON
  // (RFC 8259 requires UTF-8; simdjson and Python's json reject the text).
  for (auto s : {"\xff"s, "bad \xc3("s, "cut \xe2\x9c"s, "\xed\xa0\x80"s}) {
    auto text = json::quote(s);
    BOOST_TEST(valid_json(text), "invalid JSON for input of "
                                     << s.size() << " bytes: " << text);
  }
}

BOOST_AUTO_TEST_CASE(integers) {
  BOOST_TEST(write_int(0) == "0");
  BOOST_TEST(write_int(-1) == "-1");
  BOOST_TEST(write_int(42) == "42");
  BOOST_TEST(write_int(std::numeric_limits<int64_t>::max()) ==
             "9223372036854775807");
  BOOST_TEST(write_int(std::numeric_limits<int64_t>::min()) ==
             "-9223372036854775808");
}

BOOST_AUTO_TEST_CASE(doubles) {
  BOOST_TEST(write_double(1.0) == "1.0");
  BOOST_TEST(write_double(-2.0) == "-2.0");
  BOOST_TEST(write_double(0.0) == "0.0");
  BOOST_TEST(write_double(0.5) == "0.5");
  BOOST_TEST(write_double(1e300).find('e') != std::string::npos);
  for (double d : {std::numbers::pi, 0.1, 1e300, 1e-300, 1e21, 123456789.125,
                   -std::numbers::e, 5e-324, 1.7976931348623157e308}) {
    auto text = write_double(d);
    BOOST_TEST(std::strtod(text.c_str(), nullptr) == d, text);
    BOOST_TEST(text.find_first_of(".e") != std::string::npos, text);
    BOOST_TEST(valid_json(text), text);
  }
}

BOOST_AUTO_TEST_CASE(non_finite_doubles_become_zero) {
  BOOST_TEST(write_double(std::numeric_limits<double>::quiet_NaN()) == "0");
  BOOST_TEST(write_double(std::numeric_limits<double>::infinity()) == "0");
  BOOST_TEST(write_double(-std::numeric_limits<double>::infinity()) == "0");
}

BOOST_AUTO_TEST_CASE(nested_containers_place_commas) {
  json::writer w;
  w.begin_object();
  w.key("a");
  w.value(int64_t(1));
  w.key("b");
  w.begin_array();
  w.element();
  w.value(int64_t(1));
  w.element();
  w.begin_array();
  w.end_array();
  w.element();
  w.begin_object();
  w.end_object();
  w.element();
  w.begin_array();
  w.element();
  w.value(int64_t(2));
  w.element();
  w.value("x");
  w.end_array();
  w.end_array();
  w.key("c");
  w.begin_object();
  w.key("d");
  w.begin_object();
  w.end_object();
  w.key("e");
  w.begin_array();
  w.end_array();
  w.end_object();
  w.key("f");
  w.null();
  w.key("g");
  w.value(true);
  w.end_object();
  BOOST_TEST(w.take() ==
             R"({"a":1,"b":[1,[],{},[2,"x"]],"c":{"d":{},"e":[]},)"
             R"("f":null,"g":true})");
}

BOOST_AUTO_TEST_CASE(keys_are_escaped) {
  json::writer w;
  w.begin_object();
  w.key("a\"b\n");
  w.value(false);
  w.end_object();
  BOOST_TEST(w.take() == R"({"a\"b\n":false})");
}

BOOST_AUTO_TEST_CASE(container_encoders) {
  json::writer w;
  w.begin_object();
  w.key("list");
  json::encode(w, std::vector<int64_t>{1, 2, 3});
  w.key("empty");
  json::encode(w, std::vector<std::string>{});
  w.key("map");
  json::encode(w, std::map<std::string, std::vector<std::string>>{
                      {"x", {"a"}}, {"y", {}}});
  w.key("set");
  json::encode(w, std::set<std::string>{"b", "a"});
  w.key("none");
  json::encode(w, std::optional<int64_t>{});
  w.key("some");
  json::encode(w, std::optional<double>{2.0});
  w.key("raw");
  json::encode(w, raw(R"({"k":[1]})"));
  w.end_object();
  BOOST_TEST(w.take() ==
             R"({"list":[1,2,3],"empty":[],"map":{"x":["a"],"y":[]},)"
             R"("set":{"a":{},"b":{}},"none":null,"some":2.0,)"
             R"("raw":{"k":[1]}})");
}

// --- raw equality -----------------------------------------------------------

BOOST_AUTO_TEST_CASE(raw_equality_is_semantic) {
  BOOST_TEST((raw(R"({"a":1,"b":2})") == raw(R"({"b":2,"a":1})")));
  BOOST_TEST((raw(R"({ "a" : [ 1 , 2 ] })") == raw(R"({"a":[1,2]})")));
  BOOST_TEST((raw(R"({"a":1})") == raw(R"({"a":1.0})")));
  BOOST_TEST((raw(R"({"a":100})") == raw(R"({"a":1e2})")));
  BOOST_TEST((raw(R"({"a":{"b":null,"c":"\u0041"}})") ==
              raw(R"({"a":{"c":"A","b":null}})")));
  BOOST_TEST((raw("{}") == json::raw{}));
}

BOOST_AUTO_TEST_CASE(raw_inequality) {
  BOOST_TEST(!(raw(R"({"a":1})") == raw(R"({"a":2})")));
  BOOST_TEST(!(raw(R"({"a":[1,2]})") == raw(R"({"a":[2,1]})")));
  BOOST_TEST(!(raw(R"({"a":1})") == raw(R"({"a":1,"b":1})")));
  BOOST_TEST(!(raw(R"({"a":1,"b":1})") == raw(R"({"a":1})")));
  BOOST_TEST(!(raw(R"({"a":1})") == raw(R"({"b":1})")));
  BOOST_TEST(!(raw(R"({"a":true})") == raw(R"({"a":1})")));
  BOOST_TEST(!(raw(R"({"a":"1"})") == raw(R"({"a":1})")));
  BOOST_TEST(!(raw(R"({"a":null})") == raw(R"({"a":false})")));
  BOOST_TEST(!(raw(R"({"a":{}})") == raw(R"({"a":[]})")));
  BOOST_TEST(!(raw(R"({"a":)") == raw(R"({"a":1})")));
}

BOOST_AUTO_TEST_CASE(raw_equality_keeps_int64_precision) {
  // 2^53 + 1 and 2^53 are different integers (container sizes, ids).
  BOOST_TEST(!(raw(R"({"n":9007199254740993})") ==
               raw(R"({"n":9007199254740992})")));
  BOOST_TEST(!(raw(R"({"n":9223372036854775807})") ==
               raw(R"({"n":9223372036854775806})")));
}

BOOST_AUTO_TEST_CASE(is_object_text) {
  BOOST_TEST(json::is_object_text("{}"));
  BOOST_TEST(json::is_object_text(R"( {"a":[1]} )"));
  BOOST_TEST(!json::is_object_text("[]"));
  BOOST_TEST(!json::is_object_text("1"));
  BOOST_TEST(!json::is_object_text(""));
  BOOST_TEST(!json::is_object_text("{} {}"));
  BOOST_TEST(!json::is_object_text("{"));
}

// --- decoding ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE(wrong_type_names_the_dotted_path) {
  std::map<std::string,
           std::map<std::string, std::vector<std::map<std::string, int64_t>>>>
      v;
  auto failed = decode_text(R"({"a":{"b":[{"c":1},{"c":2},{"c":"x"}]}})", v);
  BOOST_TEST(failed.value_or("<decoded>") == "a.b[2].c");
}

BOOST_AUTO_TEST_CASE(path_of_nested_arrays) {
  std::vector<std::vector<int64_t>> v;
  auto failed = decode_text(R"([[1],[1,2,3,4,5,"x"]])", v);
  BOOST_TEST(failed.value_or("<decoded>") == "[1][5]");
}

BOOST_AUTO_TEST_CASE(path_inside_the_first_element_of_an_array) {
  std::vector<std::vector<int64_t>> v;
  auto failed = decode_text(R"([[1,"x"]])", v);
  BOOST_TEST(failed.value_or("<decoded>") == "[0][1]");
}

BOOST_AUTO_TEST_CASE(path_of_an_array_inside_an_array_element) {
  // The outer index must survive the inner array's many indices.
  std::map<std::string,
           std::vector<std::map<std::string, std::vector<int64_t>>>>
      v;
  auto failed = decode_text(
      R"({"a":[{"b":[1]},{"b":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,"x"]}]})",
      v);
  BOOST_TEST(failed.value_or("<decoded>") == "a[1].b[16]");
}

BOOST_AUTO_TEST_CASE(wrong_types_fail) {
  bool b = false;
  int64_t i = 0;
  double d = 0;
  std::string s;
  json::raw r;
  std::set<std::string> set;
  std::vector<int64_t> list;
  std::map<std::string, int64_t> map;
  BOOST_TEST(decode_text("1", b).has_value());
  BOOST_TEST(decode_text("\"true\"", b).has_value());
  BOOST_TEST(decode_text("true", i).has_value());
  BOOST_TEST(decode_text("\"1\"", i).has_value());
  BOOST_TEST(decode_text("1.5", i).has_value());
  BOOST_TEST(decode_text("1.0", i).has_value());
  BOOST_TEST(decode_text("\"1.5\"", d).has_value());
  BOOST_TEST(decode_text("false", d).has_value());
  BOOST_TEST(decode_text("1", s).has_value());
  BOOST_TEST(decode_text("[]", s).has_value());
  BOOST_TEST(decode_text("[]", r).has_value());
  BOOST_TEST(decode_text("\"{}\"", r).has_value());
  BOOST_TEST(decode_text("[\"a\"]", set).has_value());
  BOOST_TEST(decode_text("{}", list).has_value());
  BOOST_TEST(decode_text("[1]", map).has_value());
  BOOST_TEST(decode_text(R"({"a":true})", map).value_or("") == "a");
  BOOST_TEST(decode_text(R"([1,2,null,"3"])", list).value_or("") == "[3]");
}

BOOST_AUTO_TEST_CASE(null_decodes_to_the_default) {
  bool b = true;
  int64_t i = 7;
  double d = 7.5;
  std::string s = "x";
  json::raw r{R"({"a":1})"};
  std::set<std::string> set{"a"};
  std::vector<int64_t> list{1};
  std::map<std::string, int64_t> map{{"a", 1}};
  std::optional<int64_t> opt = 3;
  BOOST_TEST(!decode_text("null", b));
  BOOST_TEST(!b);
  BOOST_TEST(!decode_text("null", i));
  BOOST_TEST(i == 0);
  BOOST_TEST(!decode_text("null", d));
  BOOST_TEST(d == 0.0);
  BOOST_TEST(!decode_text("null", s));
  BOOST_TEST(s.empty());
  BOOST_TEST(!decode_text("null", r));
  BOOST_TEST((r == json::raw{}));
  BOOST_TEST(!decode_text("null", set));
  BOOST_TEST(set.empty());
  BOOST_TEST(!decode_text("null", list));
  BOOST_TEST(list.empty());
  BOOST_TEST(!decode_text("null", map));
  BOOST_TEST(map.empty());
  BOOST_TEST(!decode_text("null", opt));
  BOOST_TEST(!opt.has_value());
}

BOOST_AUTO_TEST_CASE(integer_range) {
  int64_t i = 0;
  BOOST_TEST(!decode_text("9223372036854775807", i));
  BOOST_TEST(i == std::numeric_limits<int64_t>::max());
  BOOST_TEST(!decode_text("-9223372036854775808", i));
  BOOST_TEST(i == std::numeric_limits<int64_t>::min());
  BOOST_TEST(decode_text("9223372036854775808", i).has_value());
  BOOST_TEST(decode_text("18446744073709551615", i).has_value());
  BOOST_TEST(decode_text("1e3", i).has_value());
}

BOOST_AUTO_TEST_CASE(float_field_accepts_integer_literals) {
  double d = 0;
  BOOST_TEST(!decode_text("3", d));
  BOOST_TEST(d == 3.0);
  BOOST_TEST(!decode_text("-9223372036854775808", d));
  BOOST_TEST(d == -9223372036854775808.0);
  BOOST_TEST(!decode_text("18446744073709551615", d));
  BOOST_TEST(d == 18446744073709551615.0);
  BOOST_TEST(!decode_text("2.5e-3", d));
  BOOST_TEST(d == 2.5e-3);
}

BOOST_AUTO_TEST_CASE(set_decodes_from_object) {
  std::set<std::string> set{"stale"};
  BOOST_TEST(!decode_text(R"({"b":{},"a":{},"c":{}})", set));
  BOOST_TEST((set == std::set<std::string>{"a", "b", "c"}));
  BOOST_TEST(!decode_text("{}", set));
  BOOST_TEST(set.empty());
}

BOOST_AUTO_TEST_CASE(raw_decodes_any_object) {
  json::raw r;
  BOOST_TEST(!decode_text(R"({ "b" : [1, {"c": null}], "a": "\u00e9" })", r));
  BOOST_TEST((r == raw(R"({"a":"é","b":[1,{"c":null}]})")));
  BOOST_TEST(json::is_object_text(r.text));
}

BOOST_AUTO_TEST_CASE(strings_are_unescaped) {
  std::string s;
  BOOST_TEST(!decode_text(R"("a\"b\\c\n\u0000\u00e9\ud83d\udc33")", s));
  BOOST_TEST(s == "a\"b\\c\n\0\xc3\xa9\xf0\x9f\x90\xb3"s);
}

BOOST_AUTO_TEST_CASE(decoding_replaces_previous_contents) {
  std::vector<int64_t> list{9, 9};
  BOOST_TEST(!decode_text("[1]", list));
  BOOST_TEST((list == std::vector<int64_t>{1}));
  std::map<std::string, int64_t> map{{"old", 1}};
  BOOST_TEST(!decode_text(R"({"new":2})", map));
  BOOST_TEST((map == std::map<std::string, int64_t>{{"new", 2}}));
}

BOOST_AUTO_TEST_CASE(equal_compares_parsed_values) {
  simdjson::dom::parser pa, pb, pc;
  simdjson::padded_string ta{R"([1, {"x": [true, null, "s"]}, 2.5])"s};
  simdjson::padded_string tb{R"([1.0,{"x":[true,null,"s"]},2.5])"s};
  simdjson::padded_string tc{R"([1,{"x":[true,null,"t"]},2.5])"s};
  auto a = pa.parse(ta);
  auto b = pb.parse(tb);
  auto c = pc.parse(tc);
  BOOST_TEST_REQUIRE(!a.error());
  BOOST_TEST_REQUIRE(!b.error());
  BOOST_TEST_REQUIRE(!c.error());
  BOOST_TEST(json::equal(a.value(), b.value()));
  BOOST_TEST(!json::equal(a.value(), c.value()));
}
