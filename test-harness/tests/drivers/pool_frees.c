/*
 * Frees the verifier and special pool must judge (tests/faults.rs), one
 * VARIANT_* each:
 * - MISALIGNED: frees one byte into its block, an address no allocation
 *   returned and no pool block can start at;
 * - OVERRUN_FREE2: writes one byte past its block, then frees it with
 *   ExFreePool2 (special pool checks the slack at that free too).
 */
#include "kernel.h"

#define BYTES 0x1c /* rounded up to 0x20 on both arches: the byte past it is slack */
#define TAG 'eerF'

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
#ifdef VARIANT_OVERRUN_FREE2
    block[BYTES] = 0;
    ExFreePool2(block, TAG, 0, 0);
#endif
    driver->DriverUnload = Unload;
    return 0;
}
