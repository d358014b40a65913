#!/usr/bin/env python3
"""Generates typed C++ for a varlink interface definition.

Usage: gen.py IDL_FILE NAMESPACE OUT_BASENAME

Parses the IDL with the strict grammar of the reference parsers (member names
capitalised, field names without stray underscores, every named type defined,
one namespace for types, methods and errors) and writes OUT_BASENAME.hpp
(structs, encoders, the service class) and OUT_BASENAME.cpp (decoders, the
method table, the description text). Any grammar error fails the build.
"""

import re
import sys

INTERFACE_RE = re.compile(
    r"[A-Za-z](-*[A-Za-z0-9])*(\.[A-Za-z0-9](-*[A-Za-z0-9])*)+$")
MEMBER_RE = re.compile(r"[A-Z][A-Za-z0-9]*$")
FIELD_RE = re.compile(r"[A-Za-z](_?[A-Za-z0-9])*$")
SCALARS = {"bool", "int", "float", "string", "object"}
CXX_KEYWORDS = set("""alignas alignof and and_eq asm auto bitand bitor bool
break case catch char char8_t char16_t char32_t class compl concept const
consteval constexpr constinit const_cast continue co_await co_return co_yield
decltype default delete do double dynamic_cast else enum explicit export
extern false float for friend goto if inline int long mutable namespace new
noexcept not not_eq nullptr operator or or_eq private protected public
register reinterpret_cast requires return short signed sizeof static
static_assert static_cast struct switch template this thread_local throw true
try typedef typeid typename union unsigned using virtual void volatile
wchar_t while xor xor_eq interface errno assert""".split())


class IdlError(Exception):
    pass


# --- lexer -----------------------------------------------------------------

TOKEN_RE = re.compile(r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>\#[^\n]*)
  | (?P<arrow>->)
  | (?P<map>\[string\])
  | (?P<array>\[\])
  | (?P<punct>[(),:?])
  | (?P<word>[A-Za-z0-9_.\-]+)
""", re.VERBOSE)


def tokenize(text):
    pos, line, out = 0, 1, []
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m:
            raise IdlError(f"line {line}: unexpected {text[pos]!r}")
        kind = m.lastgroup
        if kind not in ("ws", "comment"):
            value = m.group(kind)
            out.append((kind if kind != "punct" else value, value, line))
        line += m.group(0).count("\n")
        pos = m.end()
    out.append(("eof", "", line))
    return out


# --- parser ----------------------------------------------------------------

class Parser:
    def __init__(self, text):
        self.toks = tokenize(text)
        self.i = 0

    def peek(self, k=0):
        return self.toks[self.i + k]

    def next(self):
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, kind, value=None):
        t = self.next()
        if t[0] != kind or (value is not None and t[1] != value):
            want = value or kind
            raise IdlError(f"line {t[2]}: expected {want!r}, got {t[1]!r}")
        return t

    def word(self, regex, what):
        t = self.expect("word")
        if not regex.match(t[1]):
            raise IdlError(f"line {t[2]}: invalid {what} {t[1]!r}")
        return t[1]

    def parse(self):
        self.expect("word", "interface")
        name = self.word(INTERFACE_RE, "interface name")
        members = []
        while self.peek()[0] != "eof":
            kw = self.expect("word")
            if kw[1] == "type":
                n = self.word(MEMBER_RE, "type name")
                members.append(("type", n, self.parse_struct_or_enum()))
            elif kw[1] == "method":
                n = self.word(MEMBER_RE, "method name")
                inp = self.parse_struct()
                self.expect("arrow")
                members.append(("method", n, (inp, self.parse_struct())))
            elif kw[1] == "error":
                n = self.word(MEMBER_RE, "error name")
                members.append(("error", n, self.parse_struct()))
            else:
                raise IdlError(f"line {kw[2]}: unexpected {kw[1]!r}")
        return name, members

    def parse_struct_or_enum(self):
        # `(a, b)` is an enum, `(a: T)` and `()` are structs.
        if self.peek()[0] == "(" and self.peek(1)[0] == "word" \
                and self.peek(2)[0] in (",", ")"):
            return self.parse_enum()
        return self.parse_struct()

    def parse_enum(self):
        self.expect("(")
        values = [self.word(FIELD_RE, "enum value")]
        while self.peek()[0] == ",":
            self.next()
            values.append(self.word(FIELD_RE, "enum value"))
        self.expect(")")
        if len(set(values)) != len(values):
            raise IdlError(f"duplicate enum value in {values}")
        return ("enum", values)

    def parse_struct(self):
        self.expect("(")
        fields = []
        if self.peek()[0] != ")":
            while True:
                fname = self.word(FIELD_RE, "field name")
                self.expect(":")
                fields.append((fname, self.parse_type()))
                if self.peek()[0] != ",":
                    break
                self.next()
        self.expect(")")
        names = [f for f, _ in fields]
        if len(set(names)) != len(names):
            raise IdlError(f"duplicate field in {names}")
        return ("struct", fields)

    def parse_type(self, maybe_ok=True):
        t = self.peek()
        if t[0] == "?":
            if not maybe_ok:
                raise IdlError(f"line {t[2]}: '??' is not a type")
            self.next()
            return ("maybe", self.parse_type(maybe_ok=False))
        if t[0] == "array":
            self.next()
            return ("array", self.parse_type())
        if t[0] == "map":
            self.next()
            return ("map", self.parse_type())
        if t[0] == "(":
            return self.parse_struct_or_enum()
        w = self.expect("word")[1]
        if w in SCALARS:
            return (w,)
        if not MEMBER_RE.match(w):
            raise IdlError(f"line {t[2]}: invalid type name {w!r}")
        return ("ref", w)


# --- model -----------------------------------------------------------------

class Model:
    def __init__(self, name, members):
        self.name = name
        self.types = {}     # name -> ("struct", fields) | ("enum", values)
        self.methods = {}   # name -> (in, out)
        self.errors = {}    # name -> struct
        self.order = []     # generated type definitions, dependencies first
        seen = set()
        for kind, n, body in members:
            if n in seen:
                raise IdlError(f"{n} is defined twice")
            seen.add(n)
            {"type": self.types, "method": self.methods,
             "error": self.errors}[kind][n] = body
        # Named and anonymous types, each with its C++ name.
        self.defs = {}      # cxx name -> body
        self.deps = {}      # cxx name -> set of cxx names it contains
        for n, body in self.types.items():
            self.add_def(n, body)
        for n, (inp, out) in self.methods.items():
            self.add_def(n + "_in", inp)
            self.add_def(n + "_out", out)
        for n, body in self.errors.items():
            self.add_def(n, body)
        self.sort()

    def add_def(self, cname, body):
        if body[0] == "struct":
            fields = [(f, self.resolve(t, f"{cname}_{f}"))
                      for f, t in body[1]]
            body = ("struct", fields)
        self.defs[cname] = body
        self.deps[cname] = set()
        if body[0] == "struct":
            for _, t in body[1]:
                self.collect(t, self.deps[cname])
        return cname

    def resolve(self, t, anon_name):
        """Names anonymous structs and enums; checks references."""
        kind = t[0]
        if kind in ("maybe", "array", "map"):
            inner = t[1]
            if kind == "map" and inner == ("struct", []):
                return ("set",)
            return (kind, self.resolve(inner, anon_name))
        if kind in ("struct", "enum"):
            return ("ref", self.add_def(anon_name, t))
        if kind == "ref" and t[1] not in self.types:
            raise IdlError(f"type {t[1]} is used but not defined")
        return t

    def collect(self, t, out):
        if t[0] in ("maybe", "array", "map"):
            self.collect(t[1], out)
        elif t[0] == "ref":
            out.add(t[1])

    def sort(self):
        done, visiting = set(), set()

        def visit(n):
            if n in done:
                return
            if n in visiting:
                raise IdlError(f"type {n} contains itself")
            visiting.add(n)
            for d in sorted(self.deps[n]):
                visit(d)
            visiting.discard(n)
            done.add(n)
            self.order.append(n)
        for n in self.defs:
            visit(n)


# --- C++ emission ----------------------------------------------------------

def ident(name):
    return name + "_" if name in CXX_KEYWORDS else name


def cxx_type(t):
    kind = t[0]
    return {
        "bool": "bool", "int": "int64_t", "float": "double",
        "string": "std::string", "object": "json::raw",
        "set": "std::set<std::string>",
    }.get(kind) or {
        "ref": lambda: t[1],
        "maybe": lambda: f"std::optional<{cxx_type(t[1])}>",
        "array": lambda: f"std::vector<{cxx_type(t[1])}>",
        "map": lambda: f"std::map<std::string, {cxx_type(t[1])}>",
    }[kind]()


def cxx_default(t, model):
    if t[0] in ("bool",):
        return " = false"
    if t[0] == "int":
        return " = 0"
    if t[0] == "float":
        return " = 0.0"
    if t[0] == "ref" and model.defs[t[1]][0] == "enum":
        return f" = {t[1]}::{ident(model.defs[t[1]][1][0])}"
    return ""


def emit_header(model, ns, desc_name):
    o = []
    w = o.append
    w(f"// Generated by protocol/idl/gen.py from {model.name}.varlink.")
    w("// Do not edit; change the interface definition instead.")
    w("#pragma once\n")
    w('#include "protocol/json.hpp"')
    w('#include "protocol/rpc.hpp"\n')
    w("#include <cstdint>\n#include <map>\n#include <optional>")
    w("#include <set>\n#include <string>\n#include <vector>\n")
    w(f"namespace {ns} {{\n")
    w("using json::encode;\n")
    w(f'inline constexpr std::string_view interface_name = "{model.name}";\n')
    for n in model.order:
        body = model.defs[n]
        if body[0] == "enum":
            vals = ", ".join(ident(v) for v in body[1])
            w(f"enum class {n} {{ {vals} }};")
            w(f"void encode(json::writer& w, {n} v);\n")
            continue
        w(f"struct {n} {{")
        if n in model.errors:
            w(f'  static constexpr std::string_view wire_name = '
              f'"{model.name}.{n}";')
        for f, t in body[1]:
            w(f"  {cxx_type(t)} {ident(f)}{cxx_default(t, model)};")
        w(f"  bool operator==(const {n}&) const = default;")
        w("};")
        w(f"void encode(json::writer& w, const {n}& v);\n")
    w(f"/// Serves {model.name}: override the methods implemented; the")
    w("/// others answer org.varlink.service.MethodNotImplemented.")
    w("class service : public rpc::service {")
    w("public:")
    w("  void invoke(const rpc::call_ptr& c) final;")
    for m in sorted(model.methods):
        w(f"  virtual void {m}(const rpc::call_ptr& c, const {m}_in& in);")
    w("};\n")
    w("/// Method table and description text.")
    w("extern const rpc::interface_info info;\n")
    w("/// Method indices in `info.methods`.")
    w("enum class method : size_t {")
    for m in sorted(model.methods):
        w(f"  {m},")
    w("};\n")
    w(f"}} // namespace {ns}")
    return "\n".join(o) + "\n"


def emit_source(model, ns, hdr, idl_text):
    o = []
    w = o.append
    w(f"// Generated by protocol/idl/gen.py from {model.name}.varlink.")
    w(f'#include "{hdr}"\n')
    w('#include "protocol/json_decode.hpp"\n')
    w(f"namespace {ns} {{\n")
    w("using json::decode;\n")
    # Decoder declarations first: structs refer to each other.
    for n in model.order:
        w(f"bool decode(const json::element& e, {n}& v, json::path& p, "
          "json::decode_error& err);")
    w("")
    for n in model.order:
        body = model.defs[n]
        if body[0] == "enum":
            emit_enum(w, n, body[1])
        else:
            emit_struct(w, n, body[1], model)
    emit_methods(w, model)
    w(f'static constexpr std::string_view description = R"berth_idl(', )
    o[-1] += idl_text + ')berth_idl";\n'
    methods = sorted(model.methods)
    w("static const rpc::method_info methods[] = {")
    for i, m in enumerate(methods):
        w(f'  {{"{m}", "{model.name}.{m}", {i}, &decode_{m}}},')
    w("};\n")
    w(f'const rpc::interface_info info{{"{model.name}", description, '
      'methods};\n')
    w(f"}} // namespace {ns}")
    return "\n".join(o) + "\n"


def emit_enum(w, n, values):
    w(f"void encode(json::writer& w, {n} v) {{")
    w("  switch (v) {")
    for v in values:
        w(f'    case {n}::{ident(v)}: return w.value("{v}");')
    w("  }")
    w("}\n")
    w(f"bool decode(const json::element& e, {n}& v, json::path& p, "
      "json::decode_error& err) {")
    w("  std::string_view s;")
    w("  if (e.get(s) != simdjson::SUCCESS)")
    w("    return json::fail(p, err);")
    for v in values:
        w(f'  if (s == "{v}") {{ v = {n}::{ident(v)}; return true; }}')
    w("  return json::fail(p, err);")
    w("}\n")


def emit_struct(w, n, fields, model):
    w(f"void encode(json::writer& w, [[maybe_unused]] const {n}& v) {{")
    w("  w.begin_object();")
    for f, t in fields:
        if t[0] == "maybe":
            w(f"  if (v.{ident(f)}) {{")
            w(f'    w.key("{f}");')
            w(f"    encode(w, *v.{ident(f)});")
            w("  }")
        else:
            w(f'  w.key("{f}");')
            w(f"  encode(w, v.{ident(f)});")
    w("  w.end_object();")
    w("}\n")
    w(f"bool decode(const json::element& e, {n}& v, json::path& p, "
      "json::decode_error& err) {")
    w(f"  v = {n}{{}};")
    w("  if (e.is_null())")
    w("    return true;")
    w("  simdjson::dom::object o;")
    w("  if (e.get(o) != simdjson::SUCCESS)")
    w("    return json::fail(p, err);")
    if fields:
        w("  for (auto [key, value] : o) {")
        for i, (f, t) in enumerate(fields):
            kw = "if" if i == 0 else "} else if"
            w(f'    {kw} (key == "{f}") {{')
            w(f'      p.push("{f}");')
            w(f"      if (!decode(value, v.{ident(f)}, p, err))")
            w("        return false;")
            w("      p.pop();")
        w("    }")
        w("  }")
    w("  return true;")
    w("}\n")


def emit_methods(w, model):
    for m in sorted(model.methods):
        w(f"static rpc::call_ptr decode_{m}(const json::element* params, "
          "json::decode_error& err) {")
        w(f"  auto c = std::make_shared<rpc::typed_call<{m}_in>>();")
        w("  json::path p;")
        w("  if (params && !decode(*params, c->in, p, err)) {")
        w("    if (err.field.empty())")
        w('      err.field = "parameters";')
        w("    return nullptr;")
        w("  }")
        w("  return c;")
        w("}\n")
    w("void service::invoke(const rpc::call_ptr& c) {")
    w("  switch (static_cast<method>(c->method().index)) {")
    for m in sorted(model.methods):
        w(f"    case method::{m}:")
        w(f"      return {m}(c, static_cast<rpc::typed_call<{m}_in>&>"
          "(*c).in);")
    w("  }")
    w("}\n")
    for m in sorted(model.methods):
        w(f"void service::{m}(const rpc::call_ptr& c, const {m}_in&) {{")
        w("  c->not_implemented();")
        w("}\n")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    idl_path, ns, out = sys.argv[1:]
    text = open(idl_path, encoding="utf-8").read()
    try:
        name, members = Parser(text).parse()
        model = Model(name, members)
    except IdlError as e:
        sys.exit(f"{idl_path}: {e}")
    if ")berth_idl" in text:
        sys.exit(f"{idl_path}: contains the raw string delimiter")
    hdr = out + ".hpp"
    include = "protocol/gen/" + hdr.rsplit("/", 1)[-1]
    with open(hdr, "w") as f:
        f.write(emit_header(model, ns, name))
    with open(out + ".cpp", "w") as f:
        f.write(emit_source(model, ns, include, text.rstrip("\n") + "\n"))


if __name__ == "__main__":
    main()
