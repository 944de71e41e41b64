/*
 * Test drivers the project did not write in Rust, compiled with MinGW during
 * the tests. Each VARIANT_* misbehaves in one way the harness must judge the
 * way Driver Verifier (or the kernel) would. Declarations are written out here
 * so that no DDK headers are needed.
 */
#include "kernel.h"

__declspec(dllimport) void *__stdcall ExAllocatePool(int type, SIZE_T bytes);
__declspec(dllimport) void __stdcall ExFreePool(void *p);
__declspec(dllimport) unsigned char __stdcall FsRtlIsNameInExpression(
    UNICODE_STRING *expression, UNICODE_STRING *name, unsigned char ignore_case, void *table);

static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
    DbgPrint("unload %d\n", 1);
}

static void __stdcall UnloadUnterminated(DRIVER_OBJECT *driver) {
    (void)driver;
    DbgPrint("unloading, no newline");
}

/* Exported, so that without a PDB the harness still names it. */
__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver, UNICODE_STRING *registry_path) {
    /* %wZ: the format Speakeasy 1.5.11 cannot print by itself. */
    DbgPrint("loading from %wZ\n", registry_path);
#if defined(VARIANT_MULTI_LEAK)
    /* Tags are written reversed, as in C drivers: '1gaT' shows as "Tag1". */
    ExAllocatePoolWithTag(NonPagedPool, 0x20, '1gaT');
    ExAllocatePoolWithTag(PagedPool, 0x40, '2gaT');
    void *freed = ExAllocatePoolWithTag(PagedPool, 0x30, '3gaT');
    ExAllocatePool(NonPagedPoolNx, 0x10);
    ExFreePoolWithTag(freed, '3gaT');
#elif defined(VARIANT_CRASH)
    *(volatile int *)(SIZE_T)0x10 = 1;
#elif defined(VARIANT_LOOP)
    for (volatile int i = 0;; i++) {
    }
#elif defined(VARIANT_UNSUPPORTED)
    FsRtlIsNameInExpression(registry_path, registry_path, 1, 0);
#elif defined(VARIANT_NO_UNLOAD)
    ExFreePoolWithTag(ExAllocatePoolWithTag(PagedPool, 8, 'tseT'), 'tseT');
    return 0;
#elif defined(VARIANT_DOUBLE_FREE)
    void *p = ExAllocatePoolWithTag(PagedPool, 8, 'tseT');
    ExFreePoolWithTag(p, 'tseT');
    ExFreePoolWithTag(p, 'tseT');
#elif defined(VARIANT_BAD_FREE)
    ExFreePool((void *)(SIZE_T)0x12345670);
#elif defined(VARIANT_UNTERMINATED_PRINT)
    /* Debug output with no newline at its end, at load and at unload. */
    DbgPrint("no newline here");
    driver->DriverUnload = UnloadUnterminated;
    return 0;
#elif defined(VARIANT_ZERO_ALLOC)
    ExAllocatePoolWithTag(PagedPool, 0, 'oreZ');
#else
#error "pick a VARIANT_*"
#endif
    driver->DriverUnload = Unload;
    return 0;
}
