/*
 * Drivers that push the engines' own limits (tests/reliability.rs): many
 * allocations, many kernel calls, a divide error, a huge DbgPrint. Built with
 * MinGW during the tests, like misbehaving.c.
 */
#include "kernel.h"

__declspec(dllimport) void __stdcall RtlInitUnicodeString(UNICODE_STRING *s, const unsigned short *w);

#ifndef ALLOC_COUNT
#define ALLOC_COUNT 1000
#endif
#ifndef CALL_COUNT
#define CALL_COUNT 150000
#endif

#if defined(VARIANT_ALLOC_MANY)
/* Each block holds the address of the one before: the unload routine walks
 * the chain and frees every block, so the run is clean. */
static void *last_block;

static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
    ULONG freed = 0;
    while (last_block) {
        void *previous = *(void **)last_block;
        ExFreePoolWithTag(last_block, 'ynaM');
        last_block = previous;
        freed++;
    }
    DbgPrint("freed %lu\n", freed);
}
#else
static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
}
#endif

#if defined(VARIANT_DIVIDE)
volatile int zero = 0;
#endif

__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver, UNICODE_STRING *registry_path) {
    (void)registry_path;
#if defined(VARIANT_ALLOC_MANY)
    for (ULONG i = 0; i < ALLOC_COUNT; i++) {
        void **block = ExAllocatePoolWithTag(PagedPool, 0x20, 'ynaM');
        if (!block) {
            return 0xC000009A; /* STATUS_INSUFFICIENT_RESOURCES */
        }
        *block = last_block;
        last_block = block;
    }
    DbgPrint("allocated %lu\n", (ULONG)ALLOC_COUNT);
#elif defined(VARIANT_API_FLOOD)
    /* By default more kernel calls than the Speakeasy adapter allows in one
     * routine (100,000). */
    UNICODE_STRING name;
    static const unsigned short text[] = {'x', 0};
    for (ULONG i = 0; i < CALL_COUNT; i++) {
        RtlInitUnicodeString(&name, text);
    }
#elif defined(VARIANT_POOL_HOG)
    /* 2 GiB of pool in 32 MiB blocks: more than the Speakeasy adapter's pool. */
    for (int i = 0; i < 64; i++) {
        if (!ExAllocatePoolWithTag(PagedPool, 32 << 20, 'goHP')) {
            return 0xC000009A; /* STATUS_INSUFFICIENT_RESOURCES */
        }
    }
#elif defined(VARIANT_DIVIDE)
    DbgPrint("quotient %d\n", 100 / zero);
#elif defined(VARIANT_DBGPRINT_HUGE)
    /* 100 million characters asked for; Windows transmits at most 512 bytes. */
    DbgPrint("%*d|", 100000000, 1);
    DbgPrint("%s%s\n", "head-", "tail");
#else
#error "pick a VARIANT_*"
#endif
    driver->DriverUnload = Unload;
    return 0;
}
