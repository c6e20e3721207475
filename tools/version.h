/*
 * --version for the client tools (embkvctl, embkv-bench, embkv-demo):
 * EMBKV_VERSION is the CMake project version, set for every target by the
 * top-level CMakeLists.txt.
 */
#ifndef EMBKV_TOOLS_VERSION_H
#define EMBKV_TOOLS_VERSION_H

#include <stdio.h>
#include <string.h>

/* When argv holds --version before any "--": prints "PROG VERSION" on
 * stdout and returns 1 (the caller exits 0); else 0. */
static inline int embkv_tool_version(int argc, char **argv, const char *prog)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return 0;
		if (strcmp(argv[i], "--version") == 0) {
			printf("%s %s\n", prog, EMBKV_VERSION);
			return 1;
		}
	}
	return 0;
}

#endif
