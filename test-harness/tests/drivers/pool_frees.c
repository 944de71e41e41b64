/*
 * Frees the verifier and special pool must judge (tests/faults.rs), one
 * VARIANT_* each:
 * - MISALIGNED: frees one byte into its block, an address no allocation
 *   returned and no pool block can start at;
 * - OVERRUN_FREE2: writes one byte past its block, then frees it with
 *   ExFreePool2 (special pool checks the slack at that free too);
 * - NT_READS_FREED: frees its block, then has nt read it (RtlCopyUnicodeString
 *   from a string whose buffer it is);
 * - NT_READS_PAST: has nt read past its block's end (a string whose Length
 *   runs past it);
 * - NT_WRITES_FREED: frees its block, then has nt write it (RtlCopyUnicodeString
 *   to a string whose buffer it is);
 * - FREE_POOL: frees its block once, with ExFreePool (one free, whatever
 *   thunk or nt routine it goes through);
 * - BIG_TWICE: frees a block of two pages (big pool: no pool header) twice.
 */
#include "kernel.h"

#define BYTES 0x1c /* rounded up to 0x20 on both arches: the byte past it is slack */
#define TAG 'eerF'

__declspec(dllimport) void __stdcall RtlCopyUnicodeString(UNICODE_STRING *destination, const UNICODE_STRING *source);

#ifdef VARIANT_FREE_POOL
__declspec(dllimport) void __stdcall ExFreePool(void *p);
#endif

#ifdef VARIANT_OVERRUN_FREE2
__declspec(dllimport) void __stdcall ExFreePool2(void *p, ULONG tag, const void *parameters, ULONG count);
#endif

static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
}

__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver, UNICODE_STRING *registry_path) {
    (void)registry_path;
    unsigned char *block = ExAllocatePoolWithTag(PagedPool, BYTES, TAG);
    if (!block) {
        return 0xC000009A; /* STATUS_INSUFFICIENT_RESOURCES */
    }
#ifdef VARIANT_MISALIGNED
    ExFreePoolWithTag(block + 1, TAG);
#endif
#ifdef VARIANT_FREE_POOL
    ExFreePool(block);
#endif
#ifdef VARIANT_BIG_TWICE
    ExFreePoolWithTag(block, TAG);
    block = ExAllocatePoolWithTag(PagedPool, 0x2000, TAG);
    if (!block) {
        return 0xC000009A;
    }
    ExFreePoolWithTag(block, TAG);
    ExFreePoolWithTag(block, TAG);
#endif
#ifdef VARIANT_OVERRUN_FREE2
    block[BYTES] = 0;
    ExFreePool2(block, TAG, 0, 0);
#endif
#ifdef VARIANT_NT_WRITES_FREED
    {
        static unsigned short text[] = {'f', 'r', 'e', 'e', 'd'};
        UNICODE_STRING source = {sizeof text, sizeof text, text};
        UNICODE_STRING destination = {0, BYTES, (unsigned short *)block};
        ExFreePoolWithTag(block, TAG);
        RtlCopyUnicodeString(&destination, &source);
    }
#endif
#if defined(VARIANT_NT_READS_FREED) || defined(VARIANT_NT_READS_PAST)
    {
        unsigned short copy[0x100];
        UNICODE_STRING source = {BYTES, BYTES, (unsigned short *)block};
        UNICODE_STRING destination = {0, sizeof copy, copy};
#ifdef VARIANT_NT_READS_FREED
        ExFreePoolWithTag(block, TAG);
#else
        source.Length = source.MaximumLength = 0x40; /* the block has 0x1c bytes */
#endif
        RtlCopyUnicodeString(&destination, &source);
#ifdef VARIANT_NT_READS_PAST
        ExFreePoolWithTag(block, TAG);
#endif
    }
#endif
    driver->DriverUnload = Unload;
    return 0;
}
