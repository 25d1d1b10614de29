; kernel/sched.asm: who runs.  Ready lists, thread switching, the idle thread, timeouts, the
; timer tick's scheduling decision, thread_switch and thread_schedule.
;
; Priorities 0-255, one circular list per priority and a 256-bit map of non-empty lists;
; the head of the highest non-empty list runs.  Lists are lazy (Liedtke): a thread that
; blocks stays on its list, and sched_pick drops heads that are not ready, so IPC never
; touches the lists (the fast path relies on it).  Invariant: a ready thread is on its list.
; Round robin: when a thread's timeslice runs out at a tick, it moves behind the others of
; its priority.  A higher-priority thread that became ready takes over at the next tick
; (irq.asm); the kernel itself is never preempted.
; Switching: every thread has its own kernel stack in its TCB; a thread that is not running
; keeps in TCB_KSP a stack pointer whose top word is where it resumes (`ret`).

.equ DEFAULT_SLICE_TICKS, 10           ; L4_DEFAULT_TIMESLICE_US / L4_TICK_US

.section .text
; sched_init: the idle thread (TCB of thread 0.0, ID all ones: no IPC can name it).
sched_init:
    mov eax, L4_TCB_AREA
    call tcb_page_ensure
    test eax, eax
    jz boot_oom
    mov [idle_tcb], eax
    mov dword ptr [eax + TCB_ID_LO], -1
    mov dword ptr [eax + TCB_ID_HI], -1
    mov dword ptr [eax + TCB_STATE], TS_READY
    mov dword ptr [eax + TCB_SPACE], 0          ; runs in whatever space is loaded
    lea ecx, [eax + L4_TCB_SIZE - 4]
    mov dword ptr [ecx], idle_loop
    mov [eax + TCB_KSP], ecx
    ret

; The idle thread: wait for the next interrupt.  In the emulator a hlt costs nothing: the
; clock skips to the next event.  The tick handler switches away from here.
idle_loop:
    sti
    hlt
    cli
    jmp idle_loop

; sched_pick -> eax = the thread to run: the head of the highest non-empty ready list, or the
; idle thread.  Drops heads that are not ready (lazy lists).  Preserves all but eax.
sched_pick:
    push esi
    push ecx
    push edx
sp_again:
    mov ecx, 7
sp_scan:
    mov eax, [ready_bitmap + ecx*4]
    test eax, eax
    jnz sp_found
    dec ecx
    jns sp_scan
    mov eax, [idle_tcb]
    jmp sp_out
sp_found:
    bsr eax, eax
    shl ecx, 5
    add ecx, eax
    mov esi, [ready_head + ecx*4]
    cmp dword ptr [esi + TCB_STATE], TS_READY
    je sp_got
    cmp dword ptr [esi + TCB_STATE], TS_WAIT_RECV
    jne sp_drop
    mov dword ptr [esi + TCB_STATE], TS_WAIT_RECV_DQ   ; no longer queued: not for the fast path
sp_drop:
    call ready_remove
    jmp sp_again
sp_got:
    mov eax, esi
sp_out:
    pop edx
    pop ecx
    pop esi
    ret

; switch_to: eax = the thread to run.  Saves the current thread (resuming at the caller's
; return address) unless it is the same.  Clobbers every register but esp.
switch_to:
    mov ecx, esp
    and ecx, 0xFFFFFC00
    cmp eax, ecx
    je sw_done
    mov [ecx + TCB_KSP], esp
; resume_tcb: eax = thread to run; the current one is not saved (it is dead, or its
; continuation is already in its TCB_KSP).
; A thread with a TLS segment has TCB_CR3 = 0 like the idle thread, so the one test that
; finds the idle thread also finds it, and switches between threads without TLS cost nothing
; more (docs/abi.md "Thread-local storage").
resume_tcb:
    mov esp, [eax + TCB_KSP]
    lea ecx, [eax + L4_TCB_SIZE]
    mov [tss + 4], ecx                  ; TSS.ESP0: its kernel stack for the next entry
    mov ecx, [eax + TCB_CR3]
    test ecx, ecx
    jz sw_special
    cmp ecx, [cur_space]
    je sw_done
sw_cr3:
    mov cr3, ecx
    mov [cur_space], ecx
sw_done:
    ret
sw_special:                             ; the idle thread (no space), or a thread with TLS
    cmp dword ptr [eax + TCB_TLS_DESC_HI], 0
    je sw_done
    call tls_load
    mov ecx, [eax + TCB_SPACE]
    cmp ecx, [cur_space]
    jne sw_cr3
    ret

; sched_block: the current thread has left TS_READY; run another until it is woken.
; Preserves ebx, esi, edi, ebp across the switch.
sched_block:
    push ebx
    push esi
    push edi
    push ebp
    call sched_pick
    call switch_to
    pop ebp
    pop edi
    pop esi
    pop ebx
    ret

; sched_tick: the timer's scheduling decision, from irq0_entry (its frame above the return
; address).  Switches only when the tick interrupted user mode or the idle thread: a tick at
; the first instruction of a call-gate entry (the only other place with interrupts on) just
; counts.
sched_tick:
    mov ebp, esp
    and ebp, 0xFFFFFC00
    cmp ebp, [idle_tcb]
    je st_idle
    test byte ptr [esp + CS_ABOVE_RET], 3
    jz st_out
    inc dword ptr [ebp + TCB_CPU_TIME]
    dec dword ptr [ebp + TCB_TICKS_LEFT]
    jg st_prio
    mov eax, [ebp + TCB_TIMESLICE]      ; slice used up: behind the others of its priority
    mov [ebp + TCB_TICKS_LEFT], eax
    mov esi, ebp
    call ready_rotate
    call sched_pick
    jmp switch_to
st_prio:
    call sched_pick
    mov ecx, [eax + TCB_PRIO]
    cmp ecx, [ebp + TCB_PRIO]
    jbe st_out
    jmp switch_to                       ; a higher priority became ready
st_idle:
    call sched_pick
    jmp switch_to
st_out:
    ret

; -- ready lists ----------------------------------------------------------------------------
; ready_enqueue: esi = TCB, appended to its priority's list.  Clobbers eax, edx.
ready_enqueue:
    mov eax, [esi + TCB_PRIO]
    mov edx, [ready_head + eax*4]
    test edx, edx
    jnz re_append
    mov [ready_head + eax*4], esi
    mov [esi + TCB_READY_NEXT], esi
    mov [esi + TCB_READY_PREV], esi
    bts dword ptr [ready_bitmap], eax
    jmp re_done
re_append:
    push ecx
    mov ecx, [edx + TCB_READY_PREV]     ; tail
    mov [esi + TCB_READY_NEXT], edx
    mov [esi + TCB_READY_PREV], ecx
    mov [ecx + TCB_READY_NEXT], esi
    mov [edx + TCB_READY_PREV], esi
    pop ecx
re_done:
    mov dword ptr [esi + TCB_QUEUED], 1
    ret

; ready_remove: esi = TCB (queued), off its list.  Clobbers eax, edx.
ready_remove:
    mov eax, [esi + TCB_PRIO]
    mov edx, [esi + TCB_READY_NEXT]
    cmp edx, esi
    jne rr_unlink
    mov dword ptr [ready_head + eax*4], 0
    btr dword ptr [ready_bitmap], eax
    jmp rr_done
rr_unlink:
    push ecx
    mov ecx, [esi + TCB_READY_PREV]
    mov [ecx + TCB_READY_NEXT], edx
    mov [edx + TCB_READY_PREV], ecx
    cmp [ready_head + eax*4], esi
    jne rr_keep
    mov [ready_head + eax*4], edx
rr_keep:
    pop ecx
rr_done:
    mov dword ptr [esi + TCB_QUEUED], 0
    ret

; ready_rotate: esi = TCB, to the end of its list (enqueued if it was not).  Clobbers eax, edx.
ready_rotate:
    cmp dword ptr [esi + TCB_QUEUED], 0
    je ready_enqueue
    mov eax, [esi + TCB_PRIO]
    cmp [ready_head + eax*4], esi
    jne rot_move
    mov edx, [esi + TCB_READY_NEXT]     ; the head moves on: it is the tail now
    mov [ready_head + eax*4], edx
    ret
rot_move:
    call ready_remove
    jmp ready_enqueue

; thread_wake: esi = TCB -> ready (timeout dropped, queued).  Clobbers eax, edx.
thread_wake:
    call timeout_remove
    mov dword ptr [esi + TCB_STATE], TS_READY
    cmp dword ptr [esi + TCB_QUEUED], 0
    jne tw_done
    call ready_enqueue
tw_done:
    ret

; -- send queues ----------------------------------------------------------------------------
; sendq_append: ebp (sender) onto the queue of esi (receiver), FIFO.  Clobbers eax, edx.
sendq_append:
    mov eax, [esi + TCB_SENDQ]
    test eax, eax
    jnz sqa_tail
    mov [esi + TCB_SENDQ], ebp
    or dword ptr [esi + TCB_FP_BLOCK], FPB_SENDQ
    mov [ebp + TCB_SQ_NEXT], ebp
    mov [ebp + TCB_SQ_PREV], ebp
    ret
sqa_tail:
    mov edx, [eax + TCB_SQ_PREV]
    mov [ebp + TCB_SQ_NEXT], eax
    mov [ebp + TCB_SQ_PREV], edx
    mov [edx + TCB_SQ_NEXT], ebp
    mov [eax + TCB_SQ_PREV], ebp
    ret

; sendq_remove: esi = a sender, off the queue of its TCB_PARTNER.  Clobbers eax, edx.
sendq_remove:
    push ecx
    mov ecx, [esi + TCB_PARTNER]
    mov eax, [esi + TCB_SQ_NEXT]
    cmp eax, esi
    jne sqr_unlink
    mov dword ptr [ecx + TCB_SENDQ], 0
    and dword ptr [ecx + TCB_FP_BLOCK], FPB_TLS     ; (FPB_TLS: all but FPB_SENDQ)
    jmp sqr_done
sqr_unlink:
    mov edx, [esi + TCB_SQ_PREV]
    mov [edx + TCB_SQ_NEXT], eax
    mov [eax + TCB_SQ_PREV], edx
    cmp [ecx + TCB_SENDQ], esi
    jne sqr_done
    mov [ecx + TCB_SENDQ], eax
sqr_done:
    pop ecx
    ret

; -- timeouts -------------------------------------------------------------------------------
; timeout_ticks: eax = exponent e, edx = mantissa m of a V2 timeout (t = 4^(15-e) * m us)
; -> eax = ticks to wait (rounded up), 0 for a zero timeout, -1 for never (e = 0).
; Clobbers ecx, edx.
timeout_ticks:
    and eax, 0x0F
    jz tt_never
    and edx, 0xFF
    jz tt_zero
    mov ecx, 15
    sub ecx, eax
    add ecx, ecx                        ; 2 * (15 - e): m << that is t in microseconds
    mov eax, edx
    xor edx, edx
    shld edx, eax, cl
    shl eax, cl
    add eax, L4_TICK_US - 1
    adc edx, 0
    mov ecx, L4_TICK_US
    div ecx
    ret
tt_never:
    mov eax, -1
    ret
tt_zero:
    xor eax, eax
    ret

; timeout_add: esi = TCB, eax = ticks from now (> 0).  Sorted insert.  Preserves ebx, ecx.
timeout_add:
    push ecx
    add eax, [ticks]
    mov [esi + TCB_DEADLINE], eax
    mov dword ptr [esi + TCB_IN_TIMEOUT], 1
    xor edx, edx                        ; previous
    mov ecx, [timeout_head]
ta_scan:
    test ecx, ecx
    jz ta_insert
    mov eax, [ecx + TCB_DEADLINE]
    sub eax, [esi + TCB_DEADLINE]
    jg ta_insert                        ; expires later (wrap-safe difference)
    mov edx, ecx
    mov ecx, [ecx + TCB_TO_NEXT]
    jmp ta_scan
ta_insert:
    mov [esi + TCB_TO_NEXT], ecx
    mov [esi + TCB_TO_PREV], edx
    test ecx, ecx
    jz ta_no_next
    mov [ecx + TCB_TO_PREV], esi
ta_no_next:
    test edx, edx
    jz ta_head
    mov [edx + TCB_TO_NEXT], esi
    pop ecx
    ret
ta_head:
    mov [timeout_head], esi
    pop ecx
    ret

; timeout_remove: esi = TCB, off the timeout list if it is on it.  Clobbers eax, edx.
timeout_remove:
    cmp dword ptr [esi + TCB_IN_TIMEOUT], 0
    je tr_done
    mov dword ptr [esi + TCB_IN_TIMEOUT], 0
    mov eax, [esi + TCB_TO_NEXT]
    mov edx, [esi + TCB_TO_PREV]
    test eax, eax
    jz tr_no_next
    mov [eax + TCB_TO_PREV], edx
tr_no_next:
    test edx, edx
    jz tr_head
    mov [edx + TCB_TO_NEXT], eax
    ret
tr_head:
    mov [timeout_head], eax
tr_done:
    ret

; timeouts_expire: wake every thread whose timeout is due (tick).  Clobbers eax, edx, esi.
timeouts_expire:
    mov esi, [timeout_head]
    test esi, esi
    jz te_done
    mov eax, [esi + TCB_DEADLINE]
    sub eax, [ticks]
    jg te_done
    cmp dword ptr [esi + TCB_STATE], TS_WAIT_SEND
    jne te_receive
    call sendq_remove
    mov dword ptr [esi + TCB_IPC_STATUS], L4_IPC_SETIMEOUT
    call thread_wake
    jmp timeouts_expire
te_receive:
    mov dword ptr [esi + TCB_RES_DOPE], L4_IPC_RETIMEOUT
    call thread_wake
    jmp timeouts_expire
te_done:
    ret

; -- system calls -----------------------------------------------------------------------------
; thread_switch (ESI:EDI = destination, nil = any): donate the rest of the timeslice to the
; destination if it is ready, else yield to the scheduler's choice.
sys_thread_switch:
    mov eax, [ebx + R_ESI]
    mov edx, [ebx + R_EDI]
    mov ecx, eax
    or ecx, edx
    jz tsw_yield
    call tcb_lookup
    test eax, eax
    jz tsw_yield
    cmp eax, ebp
    je tsw_yield
    cmp dword ptr [eax + TCB_STATE], TS_READY
    jne tsw_yield
    jmp switch_to                       ; resumes into syscall_general's return
tsw_yield:
    mov eax, [ebp + TCB_TIMESLICE]
    mov [ebp + TCB_TICKS_LEFT], eax
    mov esi, ebp
    call ready_rotate
    call sched_pick
    jmp switch_to

; thread_schedule (EAX = parameter or -1, ESI:EDI = thread, EBX:EBP = external preempter or
; invalid).  Out: EAX = old parameter with the thread's state (-1: no such thread or not
; allowed), ECX:EDX = CPU time in us, ESI:EDI = IPC partner, EBX:EBP = old preempter.
; Changes need dest prio <= the caller's mcp and new prio <= mcp.
sys_thread_schedule:
    mov eax, [ebx + R_ESI]
    mov edx, [ebx + R_EDI]
    call tcb_lookup
    test eax, eax
    jz tsch_none
    mov esi, eax                        ; the thread
    call sched_param_of
    mov [tsch_old], eax
    mov eax, [ebx + R_EAX]
    cmp eax, L4_SCHED_INVALID
    je tsch_outputs
    mov ecx, [ebp + TCB_TASK]
    shl ecx, TASK_ENTRY_SHIFT
    add ecx, tasks
    mov ecx, [ecx + TASK_MCP]
    cmp [esi + TCB_PRIO], ecx
    ja tsch_denied
    movzx edx, al
    cmp edx, ecx
    ja tsch_denied
    cmp edx, [esi + TCB_PRIO]
    je tsch_slice
    cmp dword ptr [esi + TCB_QUEUED], 0
    je tsch_setprio
    push edx
    call ready_remove
    pop edx
    mov [esi + TCB_PRIO], edx
    call ready_enqueue
    jmp tsch_slice
tsch_setprio:
    mov [esi + TCB_PRIO], edx
tsch_slice:
    mov eax, [ebx + R_EAX]
    mov edx, eax
    shr edx, L4_SCHED_TIME_MAN_SHIFT
    jz tsch_preempter                   ; mantissa 0: keep the timeslice
    shr eax, L4_SCHED_TIME_EXP_SHIFT
    call timeout_ticks
    test eax, eax
    jnz tsch_slice_set
    inc eax
tsch_slice_set:
    cmp eax, 0x7FFFFFFF
    jbe tsch_slice_ok
    mov eax, 0x7FFFFFFF
tsch_slice_ok:
    mov [esi + TCB_TIMESLICE], eax
    cmp [esi + TCB_TICKS_LEFT], eax
    jle tsch_preempter
    mov [esi + TCB_TICKS_LEFT], eax
tsch_preempter:
    mov eax, [esi + TCB_PREEMPT_LO]
    mov [tsch_pre_lo], eax
    mov eax, [esi + TCB_PREEMPT_HI]
    mov [tsch_pre_hi], eax
    mov eax, [ebx + R_EBX]
    mov edx, [ebx + R_EBP]
    cmp eax, -1
    jne tsch_set_pre
    cmp edx, -1
    je tsch_outputs_pre
tsch_set_pre:
    mov [esi + TCB_PREEMPT_LO], eax
    mov [esi + TCB_PREEMPT_HI], edx
    jmp tsch_outputs_pre
tsch_outputs:
    mov eax, [esi + TCB_PREEMPT_LO]
    mov [tsch_pre_lo], eax
    mov eax, [esi + TCB_PREEMPT_HI]
    mov [tsch_pre_hi], eax
tsch_outputs_pre:
    mov eax, [tsch_old]
    mov [ebx + R_EAX], eax
tsch_outputs_rest:
    mov eax, [esi + TCB_CPU_TIME]
    mov ecx, L4_TICK_US
    mul ecx
    mov [ebx + R_ECX], eax
    mov [ebx + R_EDX], edx
    call partner_of
    mov [ebx + R_ESI], eax
    mov [ebx + R_EDI], edx
    mov eax, [tsch_pre_lo]
    mov [ebx + R_EBX], eax
    mov eax, [tsch_pre_hi]
    mov [ebx + R_EBP], eax
    ret
tsch_denied:
    mov dword ptr [ebx + R_EAX], -1
    mov eax, [esi + TCB_PREEMPT_LO]
    mov [tsch_pre_lo], eax
    mov eax, [esi + TCB_PREEMPT_HI]
    mov [tsch_pre_hi], eax
    jmp tsch_outputs_rest
tsch_none:
    mov dword ptr [ebx + R_EAX], -1
    xor eax, eax
    mov [ebx + R_ECX], eax
    mov [ebx + R_EDX], eax
    mov [ebx + R_ESI], eax
    mov [ebx + R_EDI], eax
    ret

; sched_param_of: esi = TCB -> eax = V2 scheduling parameter with the thread's state.
; Clobbers ecx, edx.
sched_param_of:
    mov eax, [esi + TCB_TIMESLICE]
    mov ecx, L4_TICK_US
    mul ecx                             ; microseconds in edx:eax
    mov ecx, 15
spo_norm:                               ; m * 4^(15-e): shrink m below 256
    test edx, edx
    jnz spo_shift
    cmp eax, 255
    jbe spo_done
spo_shift:
    shrd eax, edx, 2
    shr edx, 2
    dec ecx
    jnz spo_norm
spo_done:
    shl eax, L4_SCHED_TIME_MAN_SHIFT
    shl ecx, L4_SCHED_TIME_EXP_SHIFT
    or eax, ecx
    mov edx, [esi + TCB_STATE]
    movzx edx, byte ptr [state_codes + edx]
    shl edx, L4_SCHED_STATE_SHIFT
    or eax, edx
    or eax, [esi + TCB_PRIO]
    ret

; partner_of: esi = TCB -> edx:eax = ID of the thread it sends to or waits for, else 0.
partner_of:
    mov ecx, [esi + TCB_STATE]
    cmp ecx, TS_WAIT_SEND
    je po_send
    cmp ecx, TS_WAIT_RECV
    jb po_none
    cmp ecx, TS_WAIT_PF
    ja po_none                          ; TS_LOCKED
    mov ecx, [esi + TCB_WAIT_FOR]
    cmp ecx, WAIT_NOBODY
    jbe po_none
    jmp po_id
po_send:
    mov ecx, [esi + TCB_PARTNER]
po_id:
    mov eax, [ecx + TCB_ID_LO]
    mov edx, [ecx + TCB_ID_HI]
    ret
po_none:
    xor eax, eax
    xor edx, edx
    ret

.section .rodata
state_codes:                            ; TS_* -> V2 state field
    .byte L4_TS_DEAD, L4_TS_RUNNING, L4_TS_WAIT_RECEIVE, L4_TS_WAIT_RECEIVE
    .byte L4_TS_WAIT_RECEIVE, 9, L4_TS_PENDING_SEND, 0

.section .data
.align 4
idle_tcb: .long 0
ticks: .long 0
timeout_head: .long 0
tsch_old: .long 0
tsch_pre_lo: .long 0
tsch_pre_hi: .long 0
ready_bitmap:
    .long 0, 0, 0, 0, 0, 0, 0, 0

.section .bss
.align 4
ready_head:
    .space 1024
