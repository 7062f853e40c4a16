#ifndef CARTRITA_CMSGPACK_SHIM_H
#define CARTRITA_CMSGPACK_SHIM_H
// Debian's libmsgpack-dev (msgpack-c 4.0.0, library msgpackc). Only the C API.
#include <msgpack.h>
#endif
