// Boost.JSON's implementation, compiled once here so the library needs no separate Boost link.
#include <boost/json/src.hpp>
