/*
 * Drivers for `harness emulate --fail-each`: each VARIANT_* gives the sweep
 * runs whose outcomes the sweep's exit code must count.
 */
#include "kernel.h"

#ifndef ALLOC_COUNT
#define ALLOC_COUNT 3
#endif

__declspec(dllimport) unsigned char __stdcall FsRtlIsNameInExpression(
    UNICODE_STRING *expression, UNICODE_STRING *name, unsigned char ignore_case, void *table);

static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
}

static void *blocks[ALLOC_COUNT];

__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver, UNICODE_STRING *registry_path) {
    (void)registry_path;
#if defined(VARIANT_NO_UNLOAD)
    /* Frees what it got, fails cleanly, but never sets an unload routine. */
    void *p = ExAllocatePoolWithTag(PagedPool, 8, 'tseT');
    if (!p)
        return (NTSTATUS)0xC000009A;
    ExFreePoolWithTag(p, 'tseT');
    return 0;
#elif defined(VARIANT_GAP_ON_FAILURE)
    /* Its error path calls a routine the native engine does not have. */
    void *p = ExAllocatePoolWithTag(PagedPool, 8, 'paGT');
    if (!p) {
        FsRtlIsNameInExpression(registry_path, registry_path, 1, 0);
        return (NTSTATUS)0xC000009A;
    }
    ExFreePoolWithTag(p, 'paGT');
#elif defined(VARIANT_SPIN_ON_FAILURE)
    /* Waits forever for memory that a failed allocation will not bring. */
    for (int i = 0; i < ALLOC_COUNT; i++) {
        blocks[i] = ExAllocatePoolWithTag(PagedPool, 16, 'nipS');
        if (!blocks[i])
            for (volatile int spin = 0;; spin++) {
            }
    }
    for (int i = 0; i < ALLOC_COUNT; i++)
        ExFreePoolWithTag(blocks[i], 'nipS');
#elif defined(VARIANT_LEAK_ON_ERROR)
    /* Keeps every block; a failure returns without freeing the earlier ones. */
    for (int i = 0; i < ALLOC_COUNT; i++) {
        blocks[i] = ExAllocatePoolWithTag(PagedPool, 16, 'kaeL');
        if (!blocks[i])
            return (NTSTATUS)0xC000009A;
    }
    for (int i = 0; i < ALLOC_COUNT; i++)
        ExFreePoolWithTag(blocks[i], 'kaeL');
#elif defined(VARIANT_CLEAN_MANY)
    /* Allocates and frees ALLOC_COUNT times; a failure is answered cleanly. */
    for (int i = 0; i < ALLOC_COUNT; i++) {
        void *p = ExAllocatePoolWithTag(PagedPool, 16, 'ynaM');
        if (!p)
            return (NTSTATUS)0xC000009A;
        ExFreePoolWithTag(p, 'ynaM');
    }
#else
#error "pick a VARIANT_*"
#endif
    driver->DriverUnload = Unload;
    return 0;
}
