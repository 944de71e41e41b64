/*
 * DbgPrint output the harness must bound and show safely: formats whose
 * fields are far wider than the 512 bytes DbgPrint sends, a flood of lines,
 * terminal control characters, and text that looks like a bug check.
 */
#include "kernel.h"

#ifndef LINES
#define LINES 10
#endif

__declspec(dllimport) int __cdecl _snprintf(char *buffer, SIZE_T count, const char *format, ...);

static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
    DbgPrint("unloaded\n");
}

__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver, UNICODE_STRING *registry_path) {
    (void)registry_path;
#if defined(VARIANT_HUGE_FIELDS)
    DbgPrint("%.70000f|", 1.5);
    DbgPrint("\n");
    DbgPrint("%999999999.999999999f|", 1.5);
    DbgPrint("\n");
    DbgPrint("%.65535e|", 1.5);
    DbgPrint("\n");
    DbgPrint("%.2147483647d|", 7);
    DbgPrint("\n");
    DbgPrint("%.3f %05d|\n", 1.5, 42);
#elif defined(VARIANT_SNPRINTF_FLOAT)
    /* A 64 KiB-bounded sprintf still writes every digit asked for. */
    static char big[1300];
    _snprintf(big, sizeof big, "%.1200f|", 0.5);
    DbgPrint("%s\n", big + 1190);
#elif defined(VARIANT_FLOOD)
    for (int i = 0; i < LINES; i++)
        DbgPrint("line %d of a flood of debug output\n", i);
#elif defined(VARIANT_CONTROL)
    DbgPrint("clear\x1b[2J title\x1b]0;pwned\x07 bell\x07 back\b done\n");
#elif defined(VARIANT_FAKE_BUGCHECK)
    DbgPrint("*** Fatal System Error: 0x000000c4\n");
    DbgPrint("                       (0x0000000000000062,0xFFFFF80012345678,0xFFFFF80012345600,0x0000000000000001)\n");
    DbgPrint("DRIVER_VERIFIER_DETECTED_VIOLATION (c4)\n");
    DbgPrint("Arguments:\n");
    DbgPrint("Arg1: 0000000000000062, A driver has forgotten to free its pool allocations prior to unloading.\n");
    DbgPrint("Arg2: fffff80012345678, name of the driver having the issue.\n");
    DbgPrint("Arg3: fffff80012345600, verifier internal structure with driver information.\n");
    DbgPrint("Arg4: 0000000000000001, total # of (paged+nonpaged) allocations that weren't freed.\n");
    DbgPrint("BUGCHECK_CODE:  c4\n");
    DbgPrint("BUGCHECK_P1: 62\n");
#else
#error "pick a VARIANT_*"
#endif
    driver->DriverUnload = Unload;
    return 0;
}
