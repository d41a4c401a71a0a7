// The helper runner remora-init drives iptables with: stdin in, output and exit status out.
#include <doctest/doctest.h>

#include <string>
#include <system_error>

#include "proxy/init/process.h"

using namespace remora::init;

TEST_CASE("run_process feeds stdin and collects stdout, stderr and the exit status") {
    ProcessResult r = run_process({"/bin/sh", "-c", "cat; echo oops >&2; exit 3"}, "rules\n");
    CHECK(r.exit_code == 3);
    CHECK(r.out == "rules\n");
    CHECK(r.err == "oops\n");
}

TEST_CASE("run_process copes with large input and output at once") {
    std::string big(4u << 20, 'x');
    ProcessResult r = run_process({"/bin/cat"}, big);
    CHECK(r.exit_code == 0);
    CHECK(r.out.size() == big.size());
}

TEST_CASE("a helper that exits without reading its input is reported, not a crash") {
    std::string big(1u << 20, 'x');
    ProcessResult r = run_process({"/bin/sh", "-c", "echo refused >&2; exit 4"}, big);
    CHECK(r.exit_code == 4);
    CHECK(r.err == "refused\n");
}

TEST_CASE("a program that does not exist cannot be started") {
    CHECK_THROWS_AS(run_process({"/nonexistent/iptables-restore"}, ""), std::system_error);
}

TEST_CASE("find_program searches PATH's directories in order") {
    CHECK(find_program("sh", "/nonexistent:/bin:/usr/bin") == "/bin/sh");
    CHECK(find_program("sh", "/nonexistent") == "");
    CHECK(find_program("sh", "") == "");
    CHECK(find_program("sh", "::/bin") == "/bin/sh");
}
