#ifndef CARTRITA_CLMDB_SHIM_H
#define CARTRITA_CLMDB_SHIM_H
// Debian's liblmdb-dev (0.9.24). Nothing else: the Swift layer in CartritaLog adds the safety.
#include <lmdb.h>
#endif
