/*
 * Drivers that every engine must show alike (tests/engines_agree.rs):
 * VARIANT_DEVICE_LINK creates a device and a symbolic link and deletes both
 * at unload, with no pool use of its own; VARIANT_UNTERMINATED_PRINT prints
 * a line in two DbgPrint calls, the first without a newline;
 * VARIANT_COUNTED_STRINGS prints the kernel printf's %wZ and %Z (counted
 * strings, a NULL one and one with a NULL Buffer) among other conversions.
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
#elif defined(VARIANT_COUNTED_STRINGS)
typedef struct ANSI_STRING {
    USHORT Length;
    USHORT MaximumLength;
    char *Buffer;
} ANSI_STRING;

static void __stdcall Unload(DRIVER_OBJECT *driver) {
    (void)driver;
}

__declspec(dllexport) NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT *driver, UNICODE_STRING *registry_path) {
    (void)registry_path;
    static const unsigned short wide[] = L"abcdX";
    UNICODE_STRING unicode = {8, 10, (unsigned short *)wide};
    ANSI_STRING ansi = {5, 6, "helloX"};
    UNICODE_STRING no_buffer = {4, 4, 0};
    DbgPrint("[%wZ] [%Z] [%lZ] [%hZ]\n", &unicode, &ansi, &unicode, &ansi);
    DbgPrint("[%-8wZ|%8Z] [%*wZ] [%.2wZ] [%.*Z]\n", &unicode, &ansi, 6, &unicode, &unicode, 1, &ansi);
    DbgPrint("[%wZ] [%wZ] [%Z] 100%%\n", (UNICODE_STRING *)0, &no_buffer, (ANSI_STRING *)0);
    DbgPrint("[%ws] [%5d|%-3s|%I64x|%lld|%c|%p] [%wZ]\n", wide, 42, "x", 0x1234567890ULL,
        -5LL, 'q', (void *)0x1000, &unicode);
    driver->DriverUnload = Unload;
    return STATUS_SUCCESS;
}
#else
#error "pick a VARIANT_*"
#endif
