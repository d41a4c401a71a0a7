// CEL syntax, as cel-go's parser (cel.NewEnv().Parse, no extensions) accepts it: what Istio's
// validation checks of a Telemetry accessLogging filter expression. Syntax only, no type check.
#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "control/model/checks.h"

namespace remora::control::model::detail {

namespace {

enum class Tok {
    end, ident, int_lit, uint_lit, float_lit, string_lit, bytes_lit, punct, error
};

struct Token {
    Tok kind = Tok::end;
    std::string text;  // the identifier, the punctuation, the literal as written
    int line = 1, col = 1;
};

// cel-go's reserved words: not usable as identifiers.
bool is_reserved(std::string_view w) {
    static constexpr std::string_view kReserved[] = {
        "as",      "break", "const",  "continue", "else",      "for",    "function", "if",
        "import",  "let",   "loop",   "package",  "namespace", "return", "var",      "void",
        "while"};
    for (auto r : kReserved)
        if (w == r) return true;
    return false;
}

class Lexer {
  public:
    explicit Lexer(std::string_view s) : s_(s) {}

    // The next token; Tok::error with the problem in `text`.
    Token next() {
        skip_space();
        Token t;
        t.line = line_;
        t.col = col();
        if (i_ >= s_.size()) return t;
        const char c = s_[i_];
        // String and bytes literals, with their r/b prefixes.
        std::size_t p = i_;
        bool raw = false, bytes = false;
        for (int k = 0; k < 2 && p < s_.size(); ++k) {
            char l = static_cast<char>(std::tolower(static_cast<unsigned char>(s_[p])));
            if (l == 'r' && !raw) {
                raw = true;
                ++p;
            } else if (l == 'b' && !bytes) {
                bytes = true;
                ++p;
            } else {
                break;
            }
        }
        if (p < s_.size() && (s_[p] == '"' || s_[p] == '\'')) {
            i_ = p;
            return string_literal(t, raw, bytes);
        }
        if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
            std::size_t start = i_;
            while (i_ < s_.size() &&
                   (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_'))
                ++i_;
            t.kind = Tok::ident;
            t.text = std::string(s_.substr(start, i_ - start));
            return t;
        }
        if (std::isdigit(static_cast<unsigned char>(c)) ||
            (c == '.' && i_ + 1 < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_ + 1]))))
            return number(t);
        static constexpr std::string_view kTwo[] = {"==", "!=", "<=", ">=", "&&", "||"};
        for (auto op : kTwo) {
            if (s_.substr(i_, 2) == op) {
                i_ += 2;
                t.kind = Tok::punct;
                t.text = std::string(op);
                return t;
            }
        }
        if (std::string_view("+-*/%<>!?:.,()[]{}").find(c) != std::string_view::npos) {
            ++i_;
            t.kind = Tok::punct;
            t.text = std::string(1, c);
            return t;
        }
        t.kind = Tok::error;
        t.text = "token recognition error at: '" + std::string(1, c) + "'";
        return t;
    }

  private:
    int col() const { return static_cast<int>(i_ - line_start_) + 1; }

    void skip_space() {
        while (i_ < s_.size()) {
            char c = s_[i_];
            if (c == '\n') {
                ++i_;
                ++line_;
                line_start_ = i_;
            } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f') {
                ++i_;
            } else if (s_.substr(i_, 2) == "//") {
                while (i_ < s_.size() && s_[i_] != '\n')
                    ++i_;
            } else {
                break;
            }
        }
    }

    Token number(Token t) {
        std::size_t start = i_;
        auto digits = [&](auto pred) {
            std::size_t n = 0;
            while (i_ < s_.size() && pred(static_cast<unsigned char>(s_[i_]))) {
                ++i_;
                ++n;
            }
            return n;
        };
        auto is_digit = [](unsigned char ch) { return std::isdigit(ch) != 0; };
        if (s_.substr(i_, 2) == "0x" || s_.substr(i_, 2) == "0X") {
            i_ += 2;
            if (digits([](unsigned char ch) { return std::isxdigit(ch) != 0; }) == 0) {
                t.kind = Tok::error;
                t.text = "invalid hex literal";
                return t;
            }
            t.kind = Tok::int_lit;
        } else {
            digits(is_digit);
            t.kind = Tok::int_lit;
            if (i_ + 1 < s_.size() && s_[i_] == '.' &&
                std::isdigit(static_cast<unsigned char>(s_[i_ + 1]))) {
                ++i_;
                digits(is_digit);
                t.kind = Tok::float_lit;
            }
            if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
                std::size_t save = i_;
                ++i_;
                if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
                if (digits(is_digit) == 0) {
                    i_ = save;
                } else {
                    t.kind = Tok::float_lit;
                }
            }
        }
        if (t.kind == Tok::int_lit && i_ < s_.size() && (s_[i_] == 'u' || s_[i_] == 'U')) {
            ++i_;
            t.kind = Tok::uint_lit;
        }
        t.text = std::string(s_.substr(start, i_ - start));
        return t;
    }

    Token string_literal(Token t, bool raw, bool bytes) {
        const char q = s_[i_];
        const bool triple = s_.substr(i_, 3) == std::string(3, q);
        i_ += triple ? 3 : 1;
        t.kind = bytes ? Tok::bytes_lit : Tok::string_lit;
        auto fail = [&](std::string why) {
            t.kind = Tok::error;
            t.text = std::move(why);
            return t;
        };
        while (true) {
            if (i_ >= s_.size()) return fail("unterminated string literal");
            const char c = s_[i_];
            if (triple ? s_.substr(i_, 3) == std::string(3, q) : c == q) {
                i_ += triple ? 3 : 1;
                return t;
            }
            if (c == '\n') {
                if (!triple) return fail("unterminated string literal (newline)");
                ++line_;
                line_start_ = i_ + 1;
            }
            if (c == '\\' && !raw) {
                if (i_ + 1 >= s_.size()) return fail("unterminated string literal");
                const char e = s_[i_ + 1];
                std::size_t need = 0;
                auto hex = [](unsigned char ch) { return std::isxdigit(ch) != 0; };
                bool (*ok)(unsigned char) = nullptr;
                if (std::string_view("abfnrtv\\'\"`?").find(e) != std::string_view::npos) {
                    i_ += 2;
                    continue;
                }
                if (e == 'x' || e == 'X') need = 2, ok = +hex;
                if (e == 'u') need = 4, ok = +hex;
                if (e == 'U') need = 8, ok = +hex;
                if (e >= '0' && e <= '3') {
                    need = 2;
                    ok = +[](unsigned char ch) { return ch >= '0' && ch <= '7'; };
                }
                if (!ok) return fail("invalid escape sequence '\\" + std::string(1, e) + "'");
                std::size_t j = i_ + 2;
                for (std::size_t k = 0; k < need; ++k, ++j)
                    if (j >= s_.size() || !ok(static_cast<unsigned char>(s_[j])))
                        return fail("invalid escape sequence '\\" + std::string(1, e) + "'");
                if ((e == 'u' || e == 'U') && bytes)
                    return fail("unicode escape in a bytes literal");
                i_ = j;
                continue;
            }
            ++i_;
        }
    }

    std::string_view s_;
    std::size_t i_ = 0, line_start_ = 0;
    int line_ = 1;
};

// cel-go's default recursion limit (parser.MaxRecursionDepth 250).
constexpr int kMaxDepth = 250;

struct SyntaxError {
    int line, col;
    std::string what;
};

class Parser {
  public:
    explicit Parser(std::string_view s) : lex_(s) { advance(); }

    void parse() {
        expr();
        if (cur_.kind != Tok::end) unexpected();
    }

  private:
    [[noreturn]] void fail(const Token& at, std::string what) {
        throw SyntaxError{at.line, at.col, std::move(what)};
    }
    [[noreturn]] void unexpected() {
        if (cur_.kind == Tok::error) fail(cur_, cur_.text);
        fail(cur_, cur_.kind == Tok::end ? "unexpected end of expression"
                                         : "unexpected '" + cur_.text + "'");
    }
    void advance() {
        cur_ = lex_.next();
        if (cur_.kind == Tok::error) fail(cur_, cur_.text);
    }
    bool is(std::string_view p) const { return cur_.kind == Tok::punct && cur_.text == p; }
    bool is_word(std::string_view w) const { return cur_.kind == Tok::ident && cur_.text == w; }
    void expect(std::string_view p) {
        if (!is(p)) {
            fail(cur_, "missing '" + std::string(p) + "' at " +
                           (cur_.kind == Tok::end ? std::string("end of expression")
                                                  : "'" + cur_.text + "'"));
        }
        advance();
    }

    struct Depth {
        Parser& p;
        explicit Depth(Parser& parser) : p(parser) {
            if (++p.depth_ > kMaxDepth) p.fail(p.cur_, "expression recursion limit exceeded");
        }
        ~Depth() { --p.depth_; }
    };

    // What an expression is, as far as the macros need to know.
    enum class Shape { other, ident, select };

    Shape expr() {
        Depth d(*this);
        Shape s = conditional_or();
        if (is("?")) {
            advance();
            conditional_or();
            expect(":");
            expr();
            return Shape::other;
        }
        return s;
    }
    Shape conditional_or() {
        Shape s = conditional_and();
        while (is("||")) {
            advance();
            conditional_and();
            s = Shape::other;
        }
        return s;
    }
    Shape conditional_and() {
        Shape s = relation();
        while (is("&&")) {
            advance();
            relation();
            s = Shape::other;
        }
        return s;
    }
    Shape relation() {
        Shape s = addition();
        while (is("<") || is("<=") || is(">") || is(">=") || is("==") || is("!=") ||
               is_word("in")) {
            advance();
            addition();
            s = Shape::other;
        }
        return s;
    }
    Shape addition() {
        Shape s = multiplication();
        while (is("+") || is("-")) {
            advance();
            multiplication();
            s = Shape::other;
        }
        return s;
    }
    Shape multiplication() {
        Shape s = unary();
        while (is("*") || is("/") || is("%")) {
            advance();
            unary();
            s = Shape::other;
        }
        return s;
    }
    Shape unary() {
        Depth d(*this);
        if (is("!") || is("-")) {
            bool minus = is("-");
            advance();
            if (minus && cur_.kind == Tok::int_lit) {
                negative_ = true;  // -9223372036854775808 is an int
            }
            unary();
            return Shape::other;
        }
        return member();
    }

    Shape member() {
        Shape s = primary();
        while (true) {
            if (is(".")) {
                advance();
                if (is("?")) fail(cur_, "unsupported syntax '.?'");
                if (cur_.kind != Tok::ident) unexpected();
                Token name = cur_;
                advance();
                if (is("(")) {
                    advance();
                    std::vector<Shape> args = call_args();
                    member_macro(name, args);
                    s = Shape::other;
                } else if (is("{") && qualified_) {
                    struct_init();
                    s = Shape::other;
                    qualified_ = false;
                } else {
                    s = Shape::select;
                }
            } else if (is("[")) {
                advance();
                if (is("?")) fail(cur_, "unsupported syntax '[?'");
                expr();
                expect("]");
                s = Shape::other;
                qualified_ = false;
            } else {
                break;
            }
        }
        qualified_ = false;
        return s;
    }

    std::vector<Shape> call_args() {
        std::vector<Shape> args;
        if (is(")")) {
            advance();
            return args;
        }
        args.push_back(expr());
        while (is(",")) {
            advance();
            args.push_back(expr());
        }
        expect(")");
        return args;
    }

    // cel-go expands these macros while it parses, and refuses misused ones there.
    void member_macro(const Token& name, const std::vector<Shape>& args) {
        const std::string& n = name.text;
        bool two = args.size() == 2 && (n == "all" || n == "exists" || n == "exists_one" ||
                                        n == "map" || n == "filter");
        bool three = args.size() == 3 && n == "map";
        if ((two || three) && args[0] != Shape::ident) {
            fail(name, "argument must be a simple name");
        }
    }

    Shape primary() {
        Depth d(*this);
        qualified_ = false;
        if (is(".")) {  // a leading dot: .pkg.Name or .f()
            advance();
            if (cur_.kind != Tok::ident) unexpected();
        }
        if (cur_.kind == Tok::ident) {
            Token name = cur_;
            if (name.text == "true" || name.text == "false" || name.text == "null") {
                advance();
                return Shape::other;
            }
            if (name.text == "in" || is_reserved(name.text)) {
                fail(name, "reserved identifier: " + name.text);
            }
            advance();
            if (is("(")) {
                advance();
                std::vector<Shape> args = call_args();
                if (name.text == "has" && (args.size() != 1 || args[0] != Shape::select)) {
                    fail(name, "invalid argument to has() macro");
                }
                return Shape::other;
            }
            if (is("{")) {
                struct_init();
                return Shape::other;
            }
            qualified_ = true;
            return Shape::ident;
        }
        if (is("(")) {
            advance();
            expr();
            expect(")");
            return Shape::other;
        }
        if (is("[")) {
            advance();
            while (!is("]")) {
                expr();
                if (!is(",")) break;
                advance();
            }
            expect("]");
            return Shape::other;
        }
        if (is("{")) {  // a map
            advance();
            while (!is("}")) {
                if (is("?")) fail(cur_, "unsupported syntax '?'");
                expr();
                expect(":");
                expr();
                if (!is(",")) break;
                advance();
            }
            expect("}");
            return Shape::other;
        }
        if (cur_.kind == Tok::int_lit) {
            int_literal(cur_);
            advance();
            return Shape::other;
        }
        if (cur_.kind == Tok::uint_lit || cur_.kind == Tok::float_lit ||
            cur_.kind == Tok::string_lit || cur_.kind == Tok::bytes_lit) {
            advance();
            return Shape::other;
        }
        unexpected();
    }

    // A message: Name{field: value, ...}.
    void struct_init() {
        expect("{");
        while (!is("}")) {
            if (is("?")) fail(cur_, "unsupported syntax '?'");
            if (cur_.kind != Tok::ident) unexpected();
            advance();
            expect(":");
            expr();
            if (!is(",")) break;
            advance();
        }
        expect("}");
    }

    void int_literal(const Token& t) {
        const bool negative = negative_;
        negative_ = false;
        const std::string& s = t.text;
        const bool hex = s.size() > 2 && (s[1] == 'x' || s[1] == 'X');
        std::string_view digits = std::string_view(s).substr(hex ? 2 : 0);
        const unsigned __int128 limit =
            negative ? (static_cast<unsigned __int128>(1) << 63)
                     : (static_cast<unsigned __int128>(1) << 63) - 1;
        unsigned __int128 v = 0;
        for (char c : digits) {
            unsigned d = std::isdigit(static_cast<unsigned char>(c))
                             ? static_cast<unsigned>(c - '0')
                             : static_cast<unsigned>(std::tolower(c) - 'a' + 10);
            v = v * (hex ? 16 : 10) + d;
            if (v > limit) fail(t, "invalid int literal");
        }
    }

    Lexer lex_;
    Token cur_;
    int depth_ = 0;
    bool qualified_ = false;  // the member chain so far is a (qualified) name
    bool negative_ = false;   // the int literal about to be read follows a unary minus
};

}  // namespace

std::string cel_syntax_problem(std::string_view expression) {
    try {
        Parser p(expression);
        p.parse();
    } catch (const SyntaxError& e) {
        return "ERROR: <input>:" + std::to_string(e.line) + ":" + std::to_string(e.col) +
               ": Syntax error: " + e.what;
    }
    return "";
}

}  // namespace remora::control::model::detail
