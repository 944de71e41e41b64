/*
 * The Wine engine's DbgPrint probe: a kernel driver that winedevice.exe runs
 * before the driver under test, in the same process.
 *
 * Why: Wine 8's vDbgPrintExWithPrefix (dlls/ntdll/rtl.c) traces a DbgPrint's
 * text with a newline added when the text has none, so its trace cannot tell
 * "Entering DriverEntry" followed by "Leaving DriverEntry\n" from two whole
 * lines. ntdll's exception dispatcher traces a DBG_PRINTEXCEPTION_C record
 * as it is: trace+seh its length (strlen + 1), warn+seh the text, escaped.
 * The harness starts this driver in a load-order group of its own and
 * installs the driver under test in that group: Wine's services.exe runs the
 * drivers of one group in one winedevice.exe (programs/services/services.c,
 * get_winedevice_process).
 *
 * ntdll's DbgPrint, DbgPrintEx and vDbgPrintEx (which ntoskrnl.exe's exports
 * forward to) are redirected to this driver's copies. Each formats the text
 * once with ntdll's _vsnprintf, hands it to vDbgPrintExWithPrefix as "%s"
 * (Wine's own trace, as before), and then raises DBG_PRINTEXCEPTION_C with
 * it, as Windows' DbgPrint does when a debugger is attached. A vectored
 * handler, run first for every exception, continues it at once, as a
 * debugger does: the dispatcher has traced it by then, and nothing unwinds.
 * Wine raises that exception itself only when PEB->BeingDebugged is set, and
 * with that flag set Wine 8's RtlRaiseException takes another path, on which
 * a driver that caught an exception in its own __try crashed in ntdll's
 * unwinder; so the flag is left alone.
 *
 * The copies also give Wine the kernel printf's counted strings (below).
 *
 * Nothing is imported from ntdll.dll: Wine's loader would then take the
 * image for a DLL and call DriverEntry as its DllMain (dlls/ntdll/loader.c,
 * is_dll_native_subsystem). ntdll's routines are found in its export table
 * through the PEB's module list instead.
 */
#include <windows.h>
#include <winternl.h>

#define DBG_PRINTEXCEPTION_C_CODE 0x40010006u
#define DBG_PRINTEXCEPTION_WIDE_C_CODE 0x4001000Au

typedef LONG NTSTATUS;
typedef PVOID(NTAPI *AddHandler)(ULONG first, PVECTORED_EXCEPTION_HANDLER handler);
typedef ULONG(NTAPI *RemoveHandler)(PVOID handle);
typedef NTSTATUS(NTAPI *PrintWithPrefix)(const char *prefix, ULONG id, ULONG level, const char *format,
    va_list args);
typedef NTSTATUS(NTAPI *ProtectMemory)(HANDLE process, PVOID *base, SIZE_T *size, ULONG protection,
    ULONG *old);
typedef int(__cdecl *FormatText)(char *buffer, SIZE_T size, const char *format, va_list args);
typedef void(NTAPI *RaiseException_)(EXCEPTION_RECORD *record);

#define STATUS_UNSUCCESSFUL ((NTSTATUS)0xC0000001)
#define DPFLTR_ERROR_LEVEL 0

/* movabs rax, <target>; jmp rax (x64) or jmp rel32 (x86). */
#ifdef _WIN64
#define JUMP_SIZE 12
#else
#define JUMP_SIZE 5
#endif

/* DRIVER_OBJECT up to DriverUnload (wdm.h): 0x34 on x86, 0x68 on x64. */
typedef struct {
    SHORT Type;
    SHORT Size;
    PVOID DeviceObject;
    ULONG Flags;
    PVOID DriverStart;
    ULONG DriverSize;
    PVOID DriverSection;
    PVOID DriverExtension;
    UNICODE_STRING DriverName;
    PVOID HardwareDatabase;
    PVOID FastIoDispatch;
    PVOID DriverInit;
    PVOID DriverStartIo;
    void(__stdcall *DriverUnload)(PVOID driver);
} DRIVER_OBJECT_HEAD;

typedef struct {
    const char *name;
    void *replacement;
    BYTE *at;
    BYTE saved[JUMP_SIZE];
} Redirect;

static PVOID handler;
static RemoveHandler remove_handler;
static PrintWithPrefix print_with_prefix;
static ProtectMemory protect_memory;
static FormatText format_text;
static RaiseException_ raise_exception;

static int same_ascii(const char *a, const char *b) {
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* Whether `name` (a module's full path) ends in "\ntdll.dll", any case. */
static int is_ntdll(const UNICODE_STRING *name) {
    static const char tail[] = "\\ntdll.dll";
    USHORT count = name->Length / sizeof(WCHAR);
    USHORT want = sizeof(tail) - 1;
    if (count < want) {
        return 0;
    }
    for (USHORT i = 0; i < want; i++) {
        WCHAR c = name->Buffer[count - want + i];
        if (c >= 'A' && c <= 'Z') {
            c += 'a' - 'A';
        }
        if (c != (WCHAR)tail[i]) {
            return 0;
        }
    }
    return 1;
}

static PVOID ntdll_export(const char *wanted) {
    PPEB_LDR_DATA ldr = NtCurrentTeb()->ProcessEnvironmentBlock->Ldr;
    LIST_ENTRY *head = &ldr->InMemoryOrderModuleList;
    for (LIST_ENTRY *link = head->Flink; link != head; link = link->Flink) {
        LDR_DATA_TABLE_ENTRY *module = CONTAINING_RECORD(link, LDR_DATA_TABLE_ENTRY, InMemoryOrderLinks);
        if (!is_ntdll(&module->FullDllName)) {
            continue;
        }
        BYTE *base = module->DllBase;
        IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
        IMAGE_DATA_DIRECTORY *entry = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];
        IMAGE_EXPORT_DIRECTORY *exports = (IMAGE_EXPORT_DIRECTORY *)(base + entry->VirtualAddress);
        DWORD *names = (DWORD *)(base + exports->AddressOfNames);
        WORD *ordinals = (WORD *)(base + exports->AddressOfNameOrdinals);
        DWORD *functions = (DWORD *)(base + exports->AddressOfFunctions);
        for (DWORD i = 0; i < exports->NumberOfNames; i++) {
            if (same_ascii((const char *)(base + names[i]), wanted)) {
                return base + functions[ordinals[i]];
            }
        }
        return NULL;
    }
    return NULL;
}

/*
 * The kernel's printf has %Z and %wZ (an ANSI_STRING or UNICODE_STRING by
 * address: "(null)" when the address or its Buffer is NULL, as the C
 * runtime's output.c prints a counted string); Wine's has neither, prints
 * "Z" and takes no argument for it, so every later argument is misread.
 * `counted_strings` rewrites each into %.*hs or %.*ws (flags and width
 * kept, any precision dropped, as the kernel's printf ignores it), with the
 * string's length in characters before its buffer in a copy of the
 * arguments. The copy follows the format's conversions: one slot per
 * argument, two on x86 for a 64-bit integer or a double.
 */
typedef ULONG_PTR Slot;

#define FORMAT_MOST 1024
#define SLOTS_MOST 128

static const char null_text[] = "(null)";

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

static int is_flag(char c) {
    return c == '-' || c == '+' || c == ' ' || c == '#' || c == '0';
}

/* Appends `count` bytes of `text`; 0 when `out` would overflow. */
static int append(char **out, const char *end, const char *text, SIZE_T count) {
    if ((SIZE_T)(end - *out) <= count) {
        return 0;
    }
    for (SIZE_T i = 0; i < count; i++) {
        *(*out)++ = text[i];
    }
    return 1;
}

/*
 * Rewrites `format` into `out` and its arguments into `slots`; 0 when the
 * format has no counted string or goes beyond these buffers (then it is
 * printed as it is).
 */
static int counted_strings(const char *format, const Slot *in, char *out, Slot *slots) {
    const char *end = out + FORMAT_MOST - 1;
    unsigned used = 0;
    int rewritten = 0;
#define TAKE(count)                                                                                \
    do {                                                                                           \
        if (used + (count) > SLOTS_MOST) {                                                         \
            return 0;                                                                              \
        }                                                                                          \
        for (int slot_ = 0; slot_ < (count); slot_++) {                                            \
            slots[used++] = *in++;                                                                 \
        }                                                                                          \
    } while (0)
    for (const char *p = format; *p;) {
        if (*p != '%') {
            if (!append(&out, end, p++, 1)) {
                return 0;
            }
            continue;
        }
        const char *start = p++;
        if (*p == '%') {
            if (!append(&out, end, "%%", 2)) {
                return 0;
            }
            p++;
            continue;
        }
        while (is_flag(*p)) {
            p++;
        }
        if (*p == '*') {
            TAKE(1);
            p++;
        } else {
            while (is_digit(*p)) {
                p++;
            }
        }
        const char *width_end = p;
        int star_precision = 0;
        if (*p == '.') {
            p++;
            if (*p == '*') {
                star_precision = 1;
                p++;
            } else {
                while (is_digit(*p)) {
                    p++;
                }
            }
        }
        int wide = 0, wide_integer = 0;
        for (;;) {
            if (*p == 'h' || *p == 'L' || *p == 'z' || *p == 't' || *p == 'w') {
                wide |= *p == 'w';
                p++;
            } else if (*p == 'l') {
                p++;
                if (*p == 'l') {
                    wide_integer = 1;
                    p++;
                } else {
                    wide = 1;
                }
            } else if (*p == 'j') {
                wide_integer = 1;
                p++;
            } else if (*p == 'I') {
                p++;
                if (p[0] == '6' && p[1] == '4') {
                    wide_integer = 1;
                    p += 2;
                } else if (p[0] == '3' && p[1] == '2') {
                    p += 2;
                }
            } else {
                break;
            }
        }
        char conversion = *p;
        if (!conversion) {
            return 0;
        }
        p++;
        int floating = conversion == 'e' || conversion == 'E' || conversion == 'f' || conversion == 'F'
                       || conversion == 'g' || conversion == 'G' || conversion == 'a' || conversion == 'A';
        int integer = conversion == 'd' || conversion == 'i' || conversion == 'u' || conversion == 'x'
                      || conversion == 'X' || conversion == 'o';
        int slots_taken = (int)((floating || (integer && wide_integer) ? 8 : sizeof(Slot)) / sizeof(Slot));
        if (slots_taken < 1) {
            slots_taken = 1;
        }
        if (conversion != 'Z') {
            if (star_precision) {
                TAKE(1);
            }
            TAKE(slots_taken);
            if (!append(&out, end, start, (SIZE_T)(p - start))) {
                return 0;
            }
            continue;
        }
        if (star_precision) {
            in++; /* the kernel's printf ignores a counted string's precision */
        }
        const UNICODE_STRING *string = (const UNICODE_STRING *)*in++;
        Slot length, buffer;
        const char *as;
        if (!string || !string->Buffer) {
            length = sizeof(null_text) - 1;
            buffer = (Slot)null_text;
            as = ".*hs";
        } else {
            /* ANSI_STRING has UNICODE_STRING's layout, counted in bytes. */
            length = wide ? string->Length / sizeof(WCHAR) : string->Length;
            buffer = (Slot)string->Buffer;
            as = wide ? ".*ws" : ".*hs";
        }
        if (used + 2 > SLOTS_MOST || !append(&out, end, start, (SIZE_T)(width_end - start))
            || !append(&out, end, as, 4)) {
            return 0;
        }
        slots[used++] = length;
        slots[used++] = buffer;
        rewritten = 1;
    }
#undef TAKE
    *out = 0;
    return rewritten;
}

/* vDbgPrintExWithPrefix's own buffer (dlls/ntdll/rtl.c). */
#define TEXT_MOST 1024

/*
 * Prints `format` as ntdll's vDbgPrintExWithPrefix does, then raises the
 * text in a DBG_PRINTEXCEPTION_C for the dispatcher's trace.
 *
 * A counted string the probe cannot read faults here, in the probe: the run
 * is not judged, as under the native engine and Speakeasy (Windows formats
 * under try/except, WRK base/ntos/rtl/debug.c, and drops the print; an
 * invalid kernel address would be a bug check there all the same).
 */
static NTSTATUS print_exactly(ULONG id, ULONG level, const char *format, va_list args) {
    char rewritten[FORMAT_MOST];
    Slot slots[SLOTS_MOST];
    if (format && counted_strings(format, (const Slot *)args, rewritten, slots)) {
        format = rewritten;
        args = (va_list)(void *)slots;
    }
    char text[TEXT_MOST];
    if (format_text(text, sizeof(text), format, args) < 0) {
        text[sizeof(text) - 1] = 0; /* cut: _vsnprintf leaves it unterminated */
    }
    Slot text_slot[1] = {(Slot)text};
    NTSTATUS status = print_with_prefix("", id, level, "%s", (va_list)(void *)text_slot);
    EXCEPTION_RECORD record;
    record.ExceptionCode = DBG_PRINTEXCEPTION_C_CODE;
    record.ExceptionFlags = 0;
    record.ExceptionRecord = NULL;
    record.ExceptionAddress = (PVOID)raise_exception;
    record.NumberParameters = 2;
    SIZE_T length = 0;
    while (text[length]) {
        length++;
    }
    record.ExceptionInformation[0] = length + 1;
    record.ExceptionInformation[1] = (ULONG_PTR)text;
    raise_exception(&record);
    return status;
}

/* ntdll's three, as dlls/ntdll/rtl.c has them, with the flag set around. */
static NTSTATUS __cdecl probe_DbgPrint(const char *format, ...) {
    va_list args;
    va_start(args, format);
    NTSTATUS status = print_exactly(0, DPFLTR_ERROR_LEVEL, format, args);
    va_end(args);
    return status;
}

static NTSTATUS __cdecl probe_DbgPrintEx(ULONG id, ULONG level, const char *format, ...) {
    va_list args;
    va_start(args, format);
    NTSTATUS status = print_exactly(id, level, format, args);
    va_end(args);
    return status;
}

static NTSTATUS NTAPI probe_vDbgPrintEx(ULONG id, ULONG level, const char *format, va_list args) {
    return print_exactly(id, level, format, args);
}

static Redirect redirects[] = {
    {"DbgPrint", (void *)probe_DbgPrint, NULL, {0}},
    {"DbgPrintEx", (void *)probe_DbgPrintEx, NULL, {0}},
    {"vDbgPrintEx", (void *)probe_vDbgPrintEx, NULL, {0}},
};
#define REDIRECTS (sizeof(redirects) / sizeof(redirects[0]))

/* Writes `bytes` over the start of `at`, a routine's code. */
static int patch(BYTE *at, const BYTE *bytes) {
    PVOID base = at;
    SIZE_T size = JUMP_SIZE;
    ULONG old;
    if (protect_memory((HANDLE)-1, &base, &size, PAGE_EXECUTE_READWRITE, &old) < 0) {
        return 0;
    }
    for (int i = 0; i < JUMP_SIZE; i++) {
        ((volatile BYTE *)at)[i] = bytes[i];
    }
    protect_memory((HANDLE)-1, &base, &size, old, &old);
    return 1;
}

static int redirect(Redirect *entry) {
    BYTE jump[JUMP_SIZE];
#ifdef _WIN64
    ULONG_PTR target = (ULONG_PTR)entry->replacement;
    jump[0] = 0x48;
    jump[1] = 0xB8;
    for (int i = 0; i < 8; i++) {
        jump[2 + i] = (BYTE)(target >> (8 * i));
    }
    jump[10] = 0xFF;
    jump[11] = 0xE0;
#else
    LONG offset = (LONG)((BYTE *)entry->replacement - (entry->at + JUMP_SIZE));
    jump[0] = 0xE9;
    for (int i = 0; i < 4; i++) {
        jump[1 + i] = (BYTE)((ULONG)offset >> (8 * i));
    }
#endif
    for (int i = 0; i < JUMP_SIZE; i++) {
        entry->saved[i] = entry->at[i];
    }
    return patch(entry->at, jump);
}

static LONG NTAPI on_exception(EXCEPTION_POINTERS *info) {
    DWORD code = info->ExceptionRecord->ExceptionCode;
    if (code == DBG_PRINTEXCEPTION_C_CODE || code == DBG_PRINTEXCEPTION_WIDE_C_CODE) {
        return EXCEPTION_CONTINUE_EXECUTION;
    }
    return EXCEPTION_CONTINUE_SEARCH;
}

static void restore(void) {
    for (unsigned i = 0; i < REDIRECTS; i++) {
        if (redirects[i].at) {
            patch(redirects[i].at, redirects[i].saved);
        }
    }
}

static void __stdcall Unload(PVOID driver) {
    (void)driver;
    restore();
    remove_handler(handler);
}

NTSTATUS __stdcall DriverEntry(DRIVER_OBJECT_HEAD *driver, UNICODE_STRING *registry_path) {
    (void)registry_path;
    AddHandler add_handler = (AddHandler)ntdll_export("RtlAddVectoredExceptionHandler");
    remove_handler = (RemoveHandler)ntdll_export("RtlRemoveVectoredExceptionHandler");
    print_with_prefix = (PrintWithPrefix)ntdll_export("vDbgPrintExWithPrefix");
    protect_memory = (ProtectMemory)ntdll_export("NtProtectVirtualMemory");
    format_text = (FormatText)ntdll_export("_vsnprintf");
    raise_exception = (RaiseException_)ntdll_export("RtlRaiseException");
    if (!add_handler || !remove_handler || !print_with_prefix || !protect_memory || !format_text
        || !raise_exception) {
        return (NTSTATUS)STATUS_ENTRYPOINT_NOT_FOUND;
    }
    for (unsigned i = 0; i < REDIRECTS; i++) {
        redirects[i].at = ntdll_export(redirects[i].name);
        if (!redirects[i].at) {
            return (NTSTATUS)STATUS_ENTRYPOINT_NOT_FOUND;
        }
    }
    handler = add_handler(1, on_exception);
    if (!handler) {
        return STATUS_UNSUCCESSFUL;
    }
    for (unsigned i = 0; i < REDIRECTS; i++) {
        if (!redirect(&redirects[i])) {
            redirects[i].at = NULL;
            restore();
            remove_handler(handler);
            return STATUS_UNSUCCESSFUL;
        }
    }
    driver->DriverUnload = Unload;
    return 0;
}
