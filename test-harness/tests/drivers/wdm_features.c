/*
 * A typical training driver, compiled with MinGW during the tests: a control
 * device with a symbolic link, a spin lock, and pool allocations, each
 * VARIANT_* exercising one part. Declarations are written out here so that
 * no DDK headers are needed.
 */
#include "kernel.h"
typedef unsigned char KIRQL, BOOLEAN, UCHAR;
typedef SIZE_T KSPIN_LOCK;

#define STATUS_SUCCESS 0
#define STATUS_INSUFFICIENT_RESOURCES ((NTSTATUS)0xC000009AL)
#define FILE_DEVICE_UNKNOWN 0x22

__declspec(dllimport) void __stdcall RtlInitUnicodeString(UNICODE_STRING *destination, const unsigned short *source);
__declspec(dllimport) NTSTATUS __stdcall IoCreateDevice(DRIVER_OBJECT *driver, ULONG extension_size,
    UNICODE_STRING *name, ULONG type, ULONG characteristics, BOOLEAN exclusive, DEVICE_OBJECT **device);
__declspec(dllimport) void __stdcall IoDeleteDevice(DEVICE_OBJECT *device);
__declspec(dllimport) NTSTATUS __stdcall IoCreateSymbolicLink(UNICODE_STRING *link, UNICODE_STRING *target);
__declspec(dllimport) NTSTATUS __stdcall IoDeleteSymbolicLink(UNICODE_STRING *link);
__declspec(dllimport) void *__stdcall PsGetCurrentThread(void);

/* What the WDK's inline KeGetCurrentThread() reads: the processor block's
   current thread, at gs:0x188 (x64) or fs:0x124 (x86). */
static void *inline_current_thread(void) {
    void *thread;
#ifdef _WIN64
    __asm__ volatile("movq %%gs:0x188, %0" : "=r"(thread));
#else
    __asm__ volatile("movl %%fs:0x124, %0" : "=r"(thread));
#endif
    return thread;
}
#ifdef _WIN64
__declspec(dllimport) KIRQL __stdcall KeAcquireSpinLockRaiseToDpc(KSPIN_LOCK *lock);
__declspec(dllimport) void __stdcall KeReleaseSpinLock(KSPIN_LOCK *lock, KIRQL old);
#define ACQUIRE(lock) KeAcquireSpinLockRaiseToDpc(lock)
#define RELEASE(lock, old) KeReleaseSpinLock(lock, old)
#define INIT_LOCK(lock) (*(lock) = 0)
/* The WDK's x64 KeGetCurrentIrql() is inline: it reads CR8. */
static KIRQL KeGetCurrentIrql(void) {
    unsigned long long irql;
    __asm__ volatile("movq %%cr8, %0" : "=r"(irql));
    return (KIRQL)irql;
}
/* And KeRaiseIrql writes it. */
static void RaiseIrql(KIRQL level) {
    unsigned long long value = level;
    __asm__ volatile("movq %0, %%cr8" : : "r"(value));
}
#else
__declspec(dllimport) KIRQL __fastcall KfRaiseIrql(KIRQL level);
#define RaiseIrql(level) KfRaiseIrql(level)
__declspec(dllimport) KIRQL __stdcall KeGetCurrentIrql(void);
/* x86: the WDK's KeAcquireSpinLock is hal.dll's fastcall KfAcquireSpinLock. */
__declspec(dllimport) KIRQL __fastcall KfAcquireSpinLock(KSPIN_LOCK *lock);
__declspec(dllimport) void __fastcall KfReleaseSpinLock(KSPIN_LOCK *lock, KIRQL old);
__declspec(dllimport) void __stdcall KeInitializeSpinLock(KSPIN_LOCK *lock);
#define ACQUIRE(lock) KfAcquireSpinLock(lock)
#define RELEASE(lock, old) KfReleaseSpinLock(lock, old)
#define INIT_LOCK(lock) KeInitializeSpinLock(lock)
#endif

static const unsigned short device_name[] = L"\\Device\\SampleCtl";
static const unsigned short link_name[] = L"\\DosDevices\\SampleCtl";

/* Tags are written reversed, as in C drivers: '1tsF' shows as "Fst1". */
static struct {
    KSPIN_LOCK lock;
    ULONG count;
    void *first, *second;
} context, *global = &context;
static DEVICE_OBJECT *control;

static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
#if defined(VARIANT_CONTROL_DEVICE)
    UNICODE_STRING link;
    RtlInitUnicodeString(&link, link_name);
    IoDeleteSymbolicLink(&link);
    IoDeleteDevice(control);
#endif
    ExFreePoolWithTag(global->second, '2dnS');
    ExFreePoolWithTag(global->first, '1tsF');
    DbgPrint("unloaded\n");
}

__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver, UNICODE_STRING *registry_path) {
    (void)registry_path;
    global->first = ExAllocatePoolWithTag(PagedPool, 0x40, '1tsF');
    if (!global->first)
        return STATUS_INSUFFICIENT_RESOURCES;
    global->second = ExAllocatePoolWithTag(NonPagedPool, 0x80, '2dnS');
    if (!global->second) {
#if !defined(VARIANT_ERROR_PATH_LEAK)
        /* The careful error path; the leaky variant forgets this free. */
        ExFreePoolWithTag(global->first, '1tsF');
#endif
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    INIT_LOCK(&global->lock);
#if defined(VARIANT_CONTROL_DEVICE)
    UNICODE_STRING name, link;
    RtlInitUnicodeString(&name, device_name);
    RtlInitUnicodeString(&link, link_name);
    NTSTATUS status = IoCreateDevice(driver, 0x20, &name, FILE_DEVICE_UNKNOWN, 0, 0, &control);
    if (status < 0)
        return status;
    status = IoCreateSymbolicLink(&link, &name);
    if (status < 0) {
        IoDeleteDevice(control);
        return status;
    }
    DbgPrint("created %wZ -> %wZ (extension %p)\n", &link, &name, *(void **)((char *)control + (sizeof(void *) == 8 ? 0x40 : 0x28)));
    DbgPrint("current thread %s\n", inline_current_thread() == PsGetCurrentThread() ? "matches" : "differs");
#endif
    KIRQL old = ACQUIRE(&global->lock);
    KIRQL inside = KeGetCurrentIrql();
    global->count++;
    RELEASE(&global->lock, old);
    DbgPrint("irql inside the lock %d, after %d, count %u, %s %I64x %-4s|\n", inside, KeGetCurrentIrql(),
        global->count, "ok", 0x1122334455667788ULL, "ab");
    driver->DriverUnload = Unload;
#if defined(VARIANT_RAISED_RETURN)
    /* Returns to the I/O manager's worker thread at IRQL 15. */
    RaiseIrql(15);
#endif
    return STATUS_SUCCESS;
}
