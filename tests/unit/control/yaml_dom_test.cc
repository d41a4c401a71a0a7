// control/model/yaml_dom: the model's libyaml tree must read every document as yaml-cpp read it
// (kinds, scalars, tags, marks), bound alias expansion the same way, and fall back to yaml-cpp
// where libyaml is stricter than Kubernetes.
#include <doctest/doctest.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

#include "control/model/model.h"
#include "control/model/yaml_dom.h"
#include "control/model/yaml_read.h"

using namespace remora::control::model;

namespace {

const char* kind_name(const yaml::Node& n) {
    return n.IsMap()        ? "map"
           : n.IsSequence() ? "seq"
           : n.IsScalar()   ? "scalar"
           : n.IsNull()     ? "null"
                            : "undefined";
}

// The first difference between two trees, or "".
std::string diff(const yaml::Node& a, const yaml::Node& b, const std::string& at) {
    if (std::string(kind_name(a)) != kind_name(b)) {
        return at + ": " + kind_name(a) + " vs " + kind_name(b);
    }
    if (a.Scalar() != b.Scalar()) return at + ": \"" + a.Scalar() + "\" vs \"" + b.Scalar() + "\"";
    if (!a.IsNull() && a.Tag() != b.Tag()) return at + ": tag " + a.Tag() + " vs " + b.Tag();
    // A null written as nothing (`key:`) has no text to start at; its mark may differ.
    if (!a.IsNull() && (a.Mark().line != b.Mark().line || a.Mark().column != b.Mark().column ||
                        a.Mark().pos != b.Mark().pos)) {
        return at + ": mark " + std::to_string(a.Mark().line) + ":" +
               std::to_string(a.Mark().column) + "@" + std::to_string(a.Mark().pos) + " vs " +
               std::to_string(b.Mark().line) + ":" + std::to_string(b.Mark().column) + "@" +
               std::to_string(b.Mark().pos);
    }
    if (a.size() != b.size())
        return at + ": size " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (a.IsSequence()) {
            if (auto d = diff(a.item(i), b.item(i), at + "[" + std::to_string(i) + "]"); !d.empty())
                return d;
        } else {
            auto [ka, va] = a.entry(i);
            auto [kb, vb] = b.entry(i);
            if (auto d = diff(ka, kb, at + ".<key " + ka.Scalar() + ">"); !d.empty()) return d;
            if (auto d = diff(va, vb, at + "." + ka.Scalar()); !d.empty()) return d;
        }
    }
    return "";
}

// libyaml's tree against yaml-cpp's for one document; "" when they agree or libyaml refuses it.
std::string compare(const std::string& text) {
    yaml::Document fast;
    try {
        fast = yaml::parse(text);
    } catch (const YAML::ParserException&) {
        return "";
    }
    yaml::Document slow = yaml::from_yaml_cpp(YAML::Load(text));
    if (!fast.root().IsDefined()) {
        return slow.root().IsDefined() && !slow.root().IsNull() ? "libyaml read nothing" : "";
    }
    return diff(fast.root(), slow.root(), "");
}

}  // namespace

TEST_CASE("libyaml and yaml-cpp read the same trees: scalars, nulls, tags, marks, aliases") {
    const char* docs[] = {
        "a: 1\nb: \"2\"\nc: '3'\nd: ~\ne: null\nf:\ng: NULL\nh: \"null\"\ni: !!str 4\nj: !!int 5\n",
        "list:\n- a\n- {b: c, d: [1, 2]}\n-   - nested\n    - seq\nmap: {x: y}\n",
        "indentless:\n- name: a\n  value: 1\n- name: b\n  value: 2\n",
        "folded: >\n  one\n  two\nliteral: |\n  keep\n  lines\nkept: |+\n  x\n\n",
        "anchors: &a {k: v}\nalias: *a\nlist: [&s scalar, *s]\n",
        "dup: 1\ndup: 2\n",
        "\"quoted key\": 1\n'single': 2\n? complex\n: 3\n",
        "unicode: \"h\\u00e9llo\"\nraw: héllo wörld\nafter: x\n",
        "metadata:\n  labels:\n    app.kubernetes.io/name: x\n    version: v1\n",
        "",
        "# only a comment\n",
        "plain scalar document\n",
        "[1, 2, 3]\n",
        "a: 1 # comment\nb: 'it''s'\nc: \"tab\\tand\\nnewline\"\n",
        "crlf: 1\r\nnext: 2\r\n",
    };
    for (const char* d : docs) {
        CAPTURE(d);
        CHECK(compare(d) == "");
    }
}

TEST_CASE("libyaml and yaml-cpp read every document of the Istio samples the same way") {
    const char* dir = std::getenv("REMORA_ISTIO_SAMPLES");
    REQUIRE_MESSAGE(dir != nullptr, "REMORA_ISTIO_SAMPLES is not set");
    std::size_t compared = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
        auto ext = e.path().extension();
        if (!e.is_regular_file() || (ext != ".yaml" && ext != ".yml")) continue;
        std::ifstream in(e.path());
        std::stringstream ss;
        ss << in.rdbuf();
        for (const auto& [line, text] : yaml_documents(ss.str())) {
            std::string where = e.path().string() + ":" + std::to_string(line);
            CAPTURE(where);
            std::string d;
            try {
                d = compare(text);
            } catch (const YAML::Exception&) {
                continue;  // yaml-cpp refuses it (libyaml may too)
            }
            CHECK(d == "");
            ++compared;
        }
    }
    CHECK(compared > 100);
}

TEST_CASE("yaml::parse bounds aliases as load_document does, with the same messages") {
    yaml::Document ok = yaml::parse("a: &a [1, 2]\nb: [*a, *a]\nc: \"*\"\n");
    CHECK(field(ok.root(), "b").size() == 2);
    CHECK(field(ok.root(), "b").item(1).item(1).Scalar() == "2");
    YamlLimits small;
    small.max_alias_nodes = 2;
    CHECK_THROWS_WITH_AS(yaml::parse("a: &a [1, 2]\nb: *a\n", small),
                         "yaml-cpp: error at line 2, column 4: alias expands to 3 nodes, more than "
                         "the limit of 2 nodes per alias expansion",
                         YamlLimitError);
    YamlLimits nodes;
    nodes.max_expanded_nodes = 10;
    CHECK_THROWS_AS(yaml::parse("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n", nodes), YamlLimitError);
    YamlLimits bytes;
    bytes.max_expanded_bytes = 100;
    CHECK_THROWS_AS(yaml::parse("a: &a [" + std::string(40, 'x') + "]\nb: [*a, *a]\n", bytes),
                    YamlLimitError);
    CHECK_THROWS_WITH_AS(yaml::parse("x: &a [*a]\n"),
                         "yaml-cpp: error at line 1, column 8: alias refers to a node that "
                         "contains it (a cycle)",
                         YamlLimitError);
    CHECK_THROWS_AS(yaml::parse("x: *nowhere\n"), YAML::ParserException);
}

TEST_CASE(
    "a syntax error names where; what libyaml refuses and Kubernetes reads goes to yaml-cpp") {
    try {
        yaml::parse("a: [1, 2\nb: 3\n");
        FAIL("no error");
    } catch (const YAML::ParserException& e) {
        CHECK(e.mark.line >= 0);
        CHECK(!e.msg.empty());
    }
    // `:` before `]` in a flow sequence: an error for libyaml (YAML 1.1), an address for go-yaml.
    CHECK_THROWS_AS(yaml::parse("addresses: [1.2.3.4, 2001:db8::]\n"), YAML::ParserException);
    yaml::Document d = yaml::load("addresses: [1.2.3.4, 2001:db8::]\n");
    yaml::Node a = field(d.root(), "addresses");
    REQUIRE(a.size() == 2);
    CHECK(a.item(0).Scalar() == "1.2.3.4");
    // Both refuse: yaml-cpp's error is the one thrown.
    CHECK_THROWS_AS(yaml::load("a: [1, 2\nb: 3\n"), YAML::ParserException);
}

TEST_CASE("marks count bytes after multi-byte characters, as yaml-cpp's do") {
    yaml::Document d = yaml::parse("name: \"héllo wörld\"\nnext: x\n");
    yaml::Node next = field(d.root(), "next");
    CHECK(next.Mark().line == 1);
    CHECK(next.Mark().column == 6);
    // "name: \"héllo wörld\"\n" is 22 bytes (é and ö are two each), "next: " 6 more.
    CHECK(next.Mark().pos == 28);
}

TEST_CASE("undefined nodes answer everything safely") {
    yaml::Node u;
    CHECK(!u.IsDefined());
    CHECK(!u.IsMap());
    CHECK(u.Scalar().empty());
    CHECK(u.size() == 0);
    CHECK(!field(u, "x").IsDefined());
    CHECK(!field(u, {"a", "b"}).IsDefined());
    CHECK(!u.item(3).IsDefined());
    CHECK(u.Mark().is_null());
    CHECK(yaml::Node::empty_map().IsMap());
    CHECK(yaml::Node::empty_map().size() == 0);
    yaml::Document scalar = yaml::parse("just text\n");
    CHECK(!field(scalar.root(), "x").IsDefined());
}

TEST_CASE(
    "load_path reads a file whole, and a pipe too (one read, or the stream when unseekable)") {
    namespace fs = std::filesystem;
    const fs::path dir =
        fs::temp_directory_path() / ("remora-yaml-dom-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string doc =
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\n"
        "spec:\n  hosts: [a.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"
        "  resolution: DNS\n";
    {
        std::ofstream(dir / "se.yaml") << doc << "---\n" << doc;  // the same name twice: an error
    }
    Config file;
    load_path(file, dir / "se.yaml");
    CHECK(file.service_entries.size() == 1);
    // The redefinition is reported at the second document's apiVersion value, line 9 of the file.
    REQUIRE(!file.diagnostics.empty());
    CAPTURE(file.diagnostics.back().str());
    CHECK(file.diagnostics.back().str().starts_with((dir / "se.yaml").string() + ":9:13: "));

    const fs::path fifo = dir / "pipe.yaml";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    std::thread writer([&] { std::ofstream(fifo) << doc; });
    Config piped;
    load_path(piped, fifo);
    writer.join();
    CHECK(piped.errors().empty());
    CHECK(piped.service_entries.size() == 1);

    Config missing;
    load_path(missing, dir / "absent.yaml");
    REQUIRE(missing.errors().size() == 1);
    CHECK(missing.errors()[0]->str().find("cannot read file") != std::string::npos);
    fs::remove_all(dir);
}
