/*
 * The engine-gap corpus: C drivers (MinGW, built during the tests) that reach
 * what an emulating engine may lack, or that Windows itself would refuse to
 * load. Each VARIANT_* is one case of tests/engine_gaps.rs, which says what
 * each engine must give for it (a verdict, "cannot judge" with one line, or
 * "Windows would not load this image"; never a violation the driver did not
 * commit). Declarations are written out so that no DDK headers are needed.
 * Import libraries that MinGW lacks (WDFLDR.SYS) are made with dlltool by the
 * test.
 */
#include "kernel.h"
typedef unsigned int UINT;

static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
    DbgPrint("unload\n");
}

#if defined(VARIANT_KMDF)
/* What WdfDriverEntry.lib's FxDriverEntry does: bind to the framework, then
 * call through the function table the binding filled in. */
typedef struct WDF_BIND_INFO {
    ULONG Size;
    const unsigned short *Component;
    struct { ULONG Major, Minor, Build; } Version;
    ULONG FuncCount;
    void **FuncTable;
    void *Module;
} WDF_BIND_INFO;
__declspec(dllimport) NTSTATUS __stdcall WdfVersionBind(
    DRIVER_OBJECT *driver, UNICODE_STRING *registry_path, WDF_BIND_INFO *info, void **globals);
typedef NTSTATUS(__stdcall *WdfDriverCreateFn)(void *globals, DRIVER_OBJECT *driver,
                                               UNICODE_STRING *registry_path, void *attributes,
                                               void *config, void **handle);
enum { WdfDriverCreateTableIndex = 116, WdfFunctionCount = 444 };
static void *WdfFunctions;
static void *WdfDriverGlobals;
#elif defined(VARIANT_NDIS)
__declspec(dllimport) UINT __stdcall NdisGetVersion(void);
#elif defined(VARIANT_SYSINFO) || defined(VARIANT_SYSINFO_DYNAMIC)
typedef NTSTATUS(__stdcall *QuerySystemInformationFn)(ULONG info_class, void *buffer,
                                                       ULONG length, ULONG *returned);
/* An information class Speakeasy does not implement (SystemProcessorPerformanceInformation). */
enum { UnusualInformationClass = 8 };
#if defined(VARIANT_SYSINFO)
__declspec(dllimport) NTSTATUS __stdcall ZwQuerySystemInformation(
    ULONG info_class, void *buffer, ULONG length, ULONG *returned);
#else
__declspec(dllimport) void *__stdcall MmGetSystemRoutineAddress(UNICODE_STRING *name);
static unsigned short routine_name[] = {'N','t','Q','u','e','r','y','S','y','s','t','e','m',
    'I','n','f','o','r','m','a','t','i','o','n',0};
#endif
#elif defined(VARIANT_USER_DLL)
/* kernel32.dll: a user-mode DLL. The kernel loader never resolves it. */
__declspec(dllimport) ULONG __stdcall GetTickCount(void);
#elif defined(VARIANT_NTDLL)
__declspec(dllimport) ULONG __stdcall RtlGetCurrentProcessorNumber(void);
#elif defined(VARIANT_UNKNOWN_IMPORT)
/* A name no list of kernel exports has (imported through a made library). */
__declspec(dllimport) NTSTATUS __stdcall ExHarnessNoSuchRoutine(void);
#elif defined(VARIANT_PLAIN)
/* Well-behaved; the test damages its import table the way broken builds do
 * (ntoskrnl without .exe, stdcall-decorated names). */
#else
#error "pick a VARIANT_*"
#endif

/* Exported, so that without a PDB the harness still names it. */
__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver, UNICODE_STRING *registry_path) {
    void *buffer = ExAllocatePoolWithTag(PagedPool, 0x40, 'paGT');
#if defined(VARIANT_KMDF)
    WDF_BIND_INFO bind = {sizeof(WDF_BIND_INFO), u"KmdfLibrary", {1, 15, 0},
                          WdfFunctionCount, &WdfFunctions, 0};
    NTSTATUS status = WdfVersionBind(driver, registry_path, &bind, &WdfDriverGlobals);
    if (status < 0) {
        ExFreePoolWithTag(buffer, 'paGT');
        return status;
    }
    void *handle = 0;
    status = ((WdfDriverCreateFn)((void **)WdfFunctions)[WdfDriverCreateTableIndex])(
        WdfDriverGlobals, driver, registry_path, 0, 0, &handle);
    DbgPrint("WdfDriverCreate: 0x%x\n", status);
#elif defined(VARIANT_NDIS)
    (void)registry_path;
    DbgPrint("NDIS %x\n", NdisGetVersion());
#elif defined(VARIANT_SYSINFO) || defined(VARIANT_SYSINFO_DYNAMIC)
    (void)registry_path;
    ULONG returned = 0;
#if defined(VARIANT_SYSINFO)
    QuerySystemInformationFn query = ZwQuerySystemInformation;
#else
    UNICODE_STRING name = {sizeof routine_name - 2, sizeof routine_name, routine_name};
    QuerySystemInformationFn query = (QuerySystemInformationFn)MmGetSystemRoutineAddress(&name);
    if (!query) {
        ExFreePoolWithTag(buffer, 'paGT');
        return 0xC0000002; /* STATUS_NOT_IMPLEMENTED */
    }
#endif
    NTSTATUS status = query(UnusualInformationClass, buffer, 0x40, &returned);
    DbgPrint("query: 0x%x, %u bytes\n", status, returned);
#elif defined(VARIANT_USER_DLL)
    (void)registry_path;
    DbgPrint("ticks %u\n", GetTickCount());
#elif defined(VARIANT_NTDLL)
    (void)registry_path;
    DbgPrint("processor %u\n", RtlGetCurrentProcessorNumber());
#elif defined(VARIANT_UNKNOWN_IMPORT)
    (void)registry_path;
    DbgPrint("status 0x%x\n", ExHarnessNoSuchRoutine());
#elif defined(VARIANT_PLAIN)
    (void)registry_path;
#endif
    ExFreePoolWithTag(buffer, 'paGT');
    driver->DriverUnload = Unload;
    return 0;
}
