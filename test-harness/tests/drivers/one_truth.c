/*
 * Drivers that every engine must show alike (tests/engines_agree.rs):
 * VARIANT_DEVICE_LINK creates a device and a symbolic link and deletes both
 * at unload, with no pool use of its own; VARIANT_UNTERMINATED_PRINT prints
 * a line in two DbgPrint calls, the first without a newline.
 */
#include "kernel.h"
typedef unsigned char BOOLEAN;

#define STATUS_SUCCESS 0
#define FILE_DEVICE_UNKNOWN 0x22

#if defined(VARIANT_DEVICE_LINK)
__declspec(dllimport) void __stdcall RtlInitUnicodeString(UNICODE_STRING *destination, const unsigned short *source);
__declspec(dllimport) NTSTATUS __stdcall IoCreateDevice(DRIVER_OBJECT *driver, ULONG extension_size,
    UNICODE_STRING *name, ULONG type, ULONG characteristics, BOOLEAN exclusive, DEVICE_OBJECT **device);
__declspec(dllimport) void __stdcall IoDeleteDevice(DEVICE_OBJECT *device);
__declspec(dllimport) NTSTATUS __stdcall IoCreateSymbolicLink(UNICODE_STRING *link, UNICODE_STRING *target);
__declspec(dllimport) NTSTATUS __stdcall IoDeleteSymbolicLink(UNICODE_STRING *link);

static const unsigned short device_name[] = L"\\Device\\OneTruth";
static const unsigned short link_name[] = L"\\DosDevices\\OneTruth";
static DEVICE_OBJECT *control;

static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
    UNICODE_STRING link;
    RtlInitUnicodeString(&link, link_name);
    IoDeleteSymbolicLink(&link);
    IoDeleteDevice(control);
    DbgPrint("device and link deleted\n");
}

__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver, UNICODE_STRING *registry_path) {
    (void)registry_path;
    UNICODE_STRING name, link;
    RtlInitUnicodeString(&name, device_name);
    RtlInitUnicodeString(&link, link_name);
    NTSTATUS status = IoCreateDevice(driver, 0x10, &name, FILE_DEVICE_UNKNOWN, 0, 0, &control);
    if (status < 0)
        return status;
    status = IoCreateSymbolicLink(&link, &name);
    if (status < 0) {
        IoDeleteDevice(control);
        return status;
    }
    DbgPrint("device and link created\n");
    driver->DriverUnload = Unload;
    return STATUS_SUCCESS;
}
#elif defined(VARIANT_UNTERMINATED_PRINT)
static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
}

__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver, UNICODE_STRING *registry_path) {
    (void)registry_path;
    DbgPrint("Entering DriverEntry");
    DbgPrint("Leaving DriverEntry\n");
    driver->DriverUnload = Unload;
    return STATUS_SUCCESS;
}
#else
#error "pick a VARIANT_*"
#endif
