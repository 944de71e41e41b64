/*
 * Wine 8 has no bcryptprimitives.dll, and every Rust std program imports
 * ProcessPrng from it. This stand-in fills the buffer from RtlGenRandom
 * (advapi32's SystemFunction036), which Wine has. Built by tests/wine.rs
 * into the test prefix's system32.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE out, SIZE_T size) {
    const SIZE_T step = 1 << 20; /* RtlGenRandom takes a ULONG length */
    for (SIZE_T done = 0; done < size; done += step) {
        SIZE_T left = size - done;
        if (!SystemFunction036(out + done, (ULONG)(left < step ? left : step)))
            return FALSE;
    }
    return TRUE;
}
