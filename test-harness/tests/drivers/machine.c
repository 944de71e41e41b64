/*
 * Drivers that attack the emulated machine itself (issue "The emulated
 * machine under attack"): bug checks raised through nt's own routines, a jump
 * into nt's break instruction, writes to nt's code, kernel stack overflow,
 * `hlt`, privileged system instructions, unload routines and entry points
 * that point nowhere. Each VARIANT_* is one case of tests/machine.rs, which
 * says what each engine must give (the bug check Windows would raise, or
 * "cannot judge" with one line; never an invented hang or a pass).
 */
#include "kernel.h"

__declspec(dllimport) void __stdcall KeBugCheck(ULONG code);
__declspec(dllimport) void __stdcall KeBugCheckEx(ULONG code, SIZE_T p1, SIZE_T p2, SIZE_T p3,
                                                  SIZE_T p4);

static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
    DbgPrint("unload\n");
}

#if defined(VARIANT_RECURSE)
/* STACK_KIB levels of a little more than 1 KiB each: the stack DriverEntry
 * uses grows past STACK_KIB KiB. */
static __attribute__((noinline)) int recurse(int depth) {
    volatile char frame[1024];
    frame[0] = (char)depth;
    frame[sizeof frame - 1] = (char)depth;
    if (depth == 0) {
        return frame[0];
    }
    return recurse(depth - 1) + frame[sizeof frame - 1];
}
#endif

/* Exported, so that without a PDB the harness still names it. */
__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver,
                                                     UNICODE_STRING *registry_path) {
    (void)registry_path;
#if defined(VARIANT_KE_BUG_CHECK)
    KeBugCheck(0x1234);
#elif defined(VARIANT_KE_BUG_CHECK_EX)
    KeBugCheckEx(0x1234, 1, 2, 3, 4);
#elif defined(VARIANT_BREAK_IN_NT)
    /* nt's bug check path ends in an `int 3`
     * (RtlpBreakWithStatusInstruction): find it after KeBugCheck's code
     * and jump there with no bug check under way. */
    volatile unsigned char *at = (volatile unsigned char *)(SIZE_T)KeBugCheck;
    for (int i = 0; i < 0x400 && *at != 0xCC; i++) {
        at++;
    }
    if (*at == 0xCC) {
        ((void(__stdcall *)(ULONG))(SIZE_T)at)(0);
    }
#elif defined(VARIANT_PATCH_NT)
    /* Overwrite the first byte of nt!KeBugCheckEx with `ret`. */
    *(volatile unsigned char *)(SIZE_T)KeBugCheckEx = 0xC3;
#elif defined(VARIANT_RECURSE)
    DbgPrint("recursed %d\n", recurse(STACK_KIB));
#elif defined(VARIANT_HLT)
    __asm__ volatile("hlt");
#elif defined(VARIANT_CLI_HLT)
    __asm__ volatile("cli; hlt");
#elif defined(VARIANT_RDMSR)
    /* An MSR no processor has. */
    ULONG low, high;
    __asm__ volatile("rdmsr" : "=a"(low), "=d"(high) : "c"(0x4000ABCDu));
    DbgPrint("msr %x %x\n", low, high);
#elif defined(VARIANT_WRMSR_EFER)
    /* IA32_EFER = 0: long mode off under a running 64-bit kernel. */
    __asm__ volatile("wrmsr" : : "c"(0xC0000080u), "a"(0), "d"(0));
#elif defined(VARIANT_CR0)
    __asm__ volatile("mov %0, %%cr0" : : "r"((SIZE_T)0));
#elif defined(VARIANT_CR3)
    __asm__ volatile("mov %0, %%cr3" : : "r"((SIZE_T)0));
#elif defined(VARIANT_CR4)
    __asm__ volatile("mov %0, %%cr4" : : "r"((SIZE_T)0));
#elif defined(VARIANT_SYSCALL)
    __asm__ volatile("syscall" : : : "rcx", "r11", "memory");
#elif defined(VARIANT_LGDT)
    static unsigned char junk[10] = {0xff, 0x00, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41};
    __asm__ volatile("lgdt %0" : : "m"(junk));
#elif defined(VARIANT_UNLOAD_NULL)
    driver->DriverUnload = (void(__stdcall *)(DRIVER_OBJECT *))(SIZE_T)0x10;
    return 0;
#elif defined(VARIANT_UNLOAD_GARBAGE)
    driver->DriverUnload = (void(__stdcall *)(DRIVER_OBJECT *))(SIZE_T)0x41414141;
    return 0;
#elif defined(VARIANT_CLEAN)
    /* Nothing: the entry point moved elsewhere by the test. */
#else
#error "pick a VARIANT_*"
#endif
    driver->DriverUnload = Unload;
    return 0;
}
