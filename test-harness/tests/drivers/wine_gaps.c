/*
 * Drivers that reach what the Wine engine cannot do as Windows would (its
 * gaps), plus a few that test how it behaves at its limits. Compiled with
 * MinGW during the tests (tests/wine_gaps.rs), x64. Each VARIANT_* is one
 * case; the imports from modules MinGW has no import library for
 * (WDFLDR.SYS, fwpkclnt.sys, WppRecorder.sys, NDIS.SYS) come from import
 * libraries the test makes with dlltool. No DDK headers are needed.
 *
 *   KMDF            binds KMDF (WDFLDR.SYS!WdfVersionBind) and calls
 *                   WdfDriverCreate through the bound function table
 *   MISSING_MODULES imports from WDFLDR.SYS, fwpkclnt.sys and WppRecorder.sys
 *   NDIS            calls NDIS.SYS!NdisGetVersion (a stub in Wine 8)
 *   STUB            calls ntoskrnl.exe!MmGetVirtualForPhysical (a stub in Wine 8)
 *   SEH_STUB        calls the same stub inside its own __try (an SEH scope
 *                   with __C_specific_handler, as MSVC emits it), catches
 *                   the stub's exception, then writes to address 0x10
 *   BIG_DBGPRINT    DbgPrint("%*d", 100000000, 1): 100 MB of text
 *   REUSE           allocates, frees and allocates the same size again (the
 *                   pool hands back the same address), then leaks both the
 *                   second block and one more
 */
#include "kernel.h"
typedef unsigned short WCHAR;

static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
    DbgPrint("unload\n");
}

#if defined(VARIANT_KMDF) || defined(VARIANT_MISSING_MODULES)
/* WDF_BIND_INFO, as wdfldr.h lays it out. */
typedef struct WDF_BIND_INFO {
    ULONG Size;
    WCHAR *Component;
    struct { ULONG Major, Minor, Build; } Version;
    ULONG FuncCount;
    void **FuncTable;
    void *Module;
} WDF_BIND_INFO;
__declspec(dllimport) NTSTATUS __stdcall WdfVersionBind(
    DRIVER_OBJECT *driver, UNICODE_STRING *registry_path, WDF_BIND_INFO *info, void **globals);
static void *wdf_functions[444];
static WCHAR kmdf_library[] = {'K', 'm', 'd', 'f', 'L', 'i', 'b', 'r', 'a', 'r', 'y', 0};
typedef NTSTATUS(__stdcall *WdfDriverCreate)(void *globals, DRIVER_OBJECT *driver,
    UNICODE_STRING *registry_path, void *attributes, void *config, void **wdf_driver);
enum { WdfDriverCreateTableIndex = 116 };
#endif

#if defined(VARIANT_MISSING_MODULES)
__declspec(dllimport) NTSTATUS __stdcall FwpsCalloutRegister1(void *device, const void *callout, ULONG *id);
__declspec(dllimport) void __stdcall WppAutoLogStart(void *control, void *driver, UNICODE_STRING *path);
#endif

#if defined(VARIANT_NDIS)
__declspec(dllimport) unsigned int __stdcall NdisGetVersion(void);
#endif

#if defined(VARIANT_STUB) || defined(VARIANT_SEH_STUB)
__declspec(dllimport) void *__stdcall MmGetVirtualForPhysical(long long physical);
#endif

#if defined(VARIANT_SEH_STUB)
/*
 * int guarded_stub_call(void): calls MmGetVirtualForPhysical(0) inside a
 * __try whose __except (EXCEPTION_EXECUTE_HANDLER) returns 1; returns 0 when
 * the call returns. GCC has no __try, so the scope table MSVC would emit for
 * __C_specific_handler is written out here, in a function with a frame
 * pointer (as MSVC gives a function with a __try and alloca).
 *
 * Wine 8's stub thunks (`__wine_stub_X: sub $0x28,%rsp; ...; call
 * __wine_spec_unimplemented_stub`) have no unwind information, so Wine's
 * unwinder takes the thunk for a leaf function and reads the caller's return
 * address from the thunk's stack slot at [rsp], which holds whatever was there
 * before. Windows' own routines never leave the caller's frame unfindable, so
 * this driver writes its return address into that slot before the call: then
 * Wine finds the __try as Windows would.
 */
int guarded_stub_call(void);
__asm__(
    "    .text\n"
    "    .globl guarded_stub_call\n"
    "    .def guarded_stub_call; .scl 2; .type 32; .endef\n"
    "    .seh_proc guarded_stub_call\n"
    "guarded_stub_call:\n"
    "    pushq %rbp\n"
    "    .seh_pushreg %rbp\n"
    "    movq %rsp, %rbp\n"
    "    .seh_setframe %rbp, 0\n"
    "    subq $32, %rsp\n"
    "    .seh_stackalloc 32\n"
    "    .seh_endprologue\n"
    "guarded_begin:\n"
    "    leaq guarded_return(%rip), %rax\n"
    "    movq %rax, -0x30(%rsp)\n"
    "    xorl %ecx, %ecx\n"
    "    call *__imp_MmGetVirtualForPhysical(%rip)\n"
    "guarded_return:\n"
    "    nop\n"
    "guarded_end:\n"
    "    xorl %eax, %eax\n"
    "    jmp guarded_done\n"
    "guarded_except:\n"
    "    movl $1, %eax\n"
    "guarded_done:\n"
    "    movq %rbp, %rsp\n"
    "    popq %rbp\n"
    "    ret\n"
    "    .seh_handler __C_specific_handler, @except\n"
    "    .seh_handlerdata\n"
    "    .long 1\n"
    "    .rva guarded_begin, guarded_end\n"
    "    .long 1\n"
    "    .rva guarded_except\n"
    "    .text\n"
    "    .seh_endproc\n");
#endif

/* Exported, so that without a PDB the harness still names it. */
__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver, UNICODE_STRING *registry_path) {
    DbgPrint("entry\n");
#if defined(VARIANT_KMDF) || defined(VARIANT_MISSING_MODULES)
    WDF_BIND_INFO info = {sizeof(info), kmdf_library, {1, 15, 0}, 444, wdf_functions, 0};
    void *globals = 0;
    NTSTATUS status = WdfVersionBind(driver, registry_path, &info, &globals);
    if (status < 0) {
        return status;
    }
    status = ((WdfDriverCreate)wdf_functions[WdfDriverCreateTableIndex])(
        globals, driver, registry_path, 0, 0, 0);
#if defined(VARIANT_MISSING_MODULES)
    ULONG id;
    FwpsCalloutRegister1(driver->DeviceObject, 0, &id);
    WppAutoLogStart(0, driver, registry_path);
#endif
    if (status < 0) {
        return status;
    }
#elif defined(VARIANT_NDIS)
    DbgPrint("NDIS %x\n", NdisGetVersion());
#elif defined(VARIANT_STUB)
    DbgPrint("virtual %p\n", MmGetVirtualForPhysical(0));
#elif defined(VARIANT_SEH_STUB)
    DbgPrint("caught %d\n", guarded_stub_call());
    *(volatile int *)(SIZE_T)0x10 = 1;
#elif defined(VARIANT_BIG_DBGPRINT)
    DbgPrint("%*d\n", 100000000, 1);
    DbgPrint("after\n");
#elif defined(VARIANT_REUSE)
    void *first = ExAllocatePoolWithTag(PagedPool, 0x40, 'esuR');
    ExFreePoolWithTag(first, 'esuR');
    void *second = ExAllocatePoolWithTag(PagedPool, 0x40, 'esuR');
    void *third = ExAllocatePoolWithTag(NonPagedPool, 0x20, 'kaeL');
    DbgPrint("reused %d\n", first == second);
    (void)third;
#else
#error "pick a VARIANT_*"
#endif
    driver->DriverUnload = Unload;
    return 0;
}
