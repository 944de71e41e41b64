/*
 * What every C test driver declares of the kernel, written out so that no
 * DDK headers are needed: the integer types, UNICODE_STRING and
 * DRIVER_OBJECT as wdm.h lays them out (x86 and x64), the pool types, and
 * the pool and debug-print imports from ntoskrnl.exe.
 */
#ifndef HARNESS_TEST_KERNEL_H
#define HARNESS_TEST_KERNEL_H

typedef unsigned short USHORT;
typedef unsigned long ULONG; /* 32-bit on Windows, x86 and x64 */
typedef long NTSTATUS;
typedef __SIZE_TYPE__ SIZE_T;

typedef struct UNICODE_STRING {
    USHORT Length;
    USHORT MaximumLength;
    unsigned short *Buffer;
} UNICODE_STRING;

typedef struct DRIVER_OBJECT DRIVER_OBJECT;
typedef struct DEVICE_OBJECT DEVICE_OBJECT;
struct DRIVER_OBJECT {
    short Type, Size;
    DEVICE_OBJECT *DeviceObject;
    ULONG Flags;
    void *DriverStart;
    ULONG DriverSize;
    void *DriverSection, *DriverExtension;
    UNICODE_STRING DriverName;
    void *HardwareDatabase, *FastIoDispatch, *DriverInit, *DriverStartIo;
    void (__stdcall *DriverUnload)(DRIVER_OBJECT *);
    void *MajorFunction[28];
};

enum { NonPagedPool = 0, PagedPool = 1, NonPagedPoolNx = 512 };

__declspec(dllimport) void *__stdcall ExAllocatePoolWithTag(int type, SIZE_T bytes, ULONG tag);
__declspec(dllimport) void __stdcall ExFreePoolWithTag(void *p, ULONG tag);
__declspec(dllimport) ULONG __cdecl DbgPrint(const char *format, ...);

#endif
