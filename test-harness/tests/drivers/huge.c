/*
 * Requests no pool can hold (tests/hostile.rs): sizes near the top of
 * SIZE_T. Windows returns NULL for each (ExAllocatePoolWithTag and
 * ExAllocatePool2 both document NULL when the pool cannot satisfy the
 * request), so the driver's own failure path runs. The driver prints what
 * each request got, frees whatever it was given, and fails DriverEntry if
 * a huge request succeeded; a small request between them must still work.
 */
#include "kernel.h"

typedef unsigned long long ULONG64;

#define POOL_FLAG_NON_PAGED 0x40ULL

__declspec(dllimport) void *__stdcall ExAllocatePool2(ULONG64 flags, SIZE_T bytes, ULONG tag);

static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
}

/* Returns 1 if the huge request was (wrongly) satisfied. */
static int huge(SIZE_T bytes, int pool2) {
    void *block = pool2 ? ExAllocatePool2(POOL_FLAG_NON_PAGED, bytes, 'eguH')
                        : ExAllocatePoolWithTag(NonPagedPool, bytes, 'eguH');
    /* The block a correct pool gives next must not overlap a huge one. */
    void *small = ExAllocatePoolWithTag(NonPagedPool, 0x20, 'llmS');
    DbgPrint("%s 0x%Ix -> %s\n", pool2 ? "ExAllocatePool2" : "ExAllocatePoolWithTag",
             bytes, block ? "block" : "NULL");
    if (small) {
        ExFreePoolWithTag(small, 'llmS');
    } else {
        DbgPrint("small request failed\n");
        return 1;
    }
    if (block) {
        ExFreePoolWithTag(block, 'eguH');
        return 1;
    }
    return 0;
}

__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver, UNICODE_STRING *registry_path) {
    (void)registry_path;
    static const SIZE_T sizes[] = {
        (SIZE_T)-1,
        (SIZE_T)-0x10,
        (SIZE_T)-0x1000,
        (SIZE_T)-0x1001,
        ((SIZE_T)-1 >> 1) + 1,
    };
    int wrong = 0;
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        wrong |= huge(sizes[i], 0);
        wrong |= huge(sizes[i], 1);
    }
    if (wrong) {
        return 0xC0000001; /* STATUS_UNSUCCESSFUL: a huge request got a block */
    }
    driver->DriverUnload = Unload;
    return 0;
}
