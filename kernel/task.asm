; kernel/task.asm: tasks.  The task table, and task_new: create an active task (a new address
; space with lthread 0 running), delete one (with its whole clan), or hand the right to
; create it to another chief (an inactive task).
;
; Every task number has a chief, the task allowed to create or delete it: at boot the root
; task for every free number (from L4_FIRST_FREE_TASK), the kernel (0) for the rest; a task
; created by task_new keeps its creator as chief.  Deleting a task deletes every active task
; whose chief is deleted too (the clan, at any depth), found by marking until nothing changes,
; so no recursion depends on the kernel stack.  A deleted task's number keeps its chief, and
; the numbers it was chief of keep it as theirs: the right to create them comes back with it.
; The same table routes IPC between clans (clan.asm).

.section .text
task_init:
    mov ebx, tasks
    xor ecx, ecx
ti_loop:
    xor eax, eax
    cmp ecx, L4_FIRST_FREE_TASK
    jb ti_chief
    mov eax, L4_ROOT_TASK
ti_chief:
    mov [ebx + TASK_CHIEF], eax
    add ebx, TASK_ENTRY_SIZE
    inc ecx
    cmp ecx, L4_MAX_TASKS
    jb ti_loop
    ret

; task_new (ESI:EDI = task ID, EAX = mcp (pager given) or new chief (nil pager), ECX = esp,
; EDX = eip, EBX:EBP = pager) -> ESI:EDI = the ID of the new lthread 0 (or of the inactive
; task), nil when refused: not the chief, a bad number, no kernel memory, or the caller's own
; clan would be deleted.
sys_task_new:
    mov eax, [ebx + R_ESI]
    shr eax, L4_ID_TASK_SHIFT
    and eax, L4_ID_TASK_MASK
    cmp eax, L4_MAX_TASKS
    jae tn_fail
    mov [tn_task], eax
    mov esi, eax
    shl esi, TASK_ENTRY_SHIFT
    add esi, tasks
    mov ecx, [ebp + TCB_TASK]
    cmp [esi + TASK_CHIEF], ecx
    jne tn_fail
    cmp dword ptr [esi + TASK_PD], 0
    je tn_inactive
    call task_delete
    jc tn_fail
tn_inactive:
    mov eax, [ebx + R_EBX]
    or eax, [ebx + R_EBP]
    jnz tn_create
    ; nil pager: stays inactive; the right to create it may go to another chief
    mov eax, [ebx + R_EAX]
    shr eax, L4_ID_TASK_SHIFT
    and eax, L4_ID_TASK_MASK
    test eax, eax
    jz tn_inactive_id
    cmp eax, L4_MAX_TASKS
    jae tn_inactive_id
    mov [esi + TASK_CHIEF], eax
tn_inactive_id:
    mov eax, [tn_task]
    shl eax, L4_ID_TASK_SHIFT
    or eax, [esi + TASK_VERSION]
    mov [ebx + R_ESI], eax
    mov dword ptr [ebx + R_EDI], 0
    ret
tn_create:
    mov eax, [esi + TASK_VERSION]       ; a new version: old IDs of this task stay invalid
    inc eax
    and eax, L4_ID_VERSION_LOW_MASK
    jnz tn_version
    inc eax
tn_version:
    mov [esi + TASK_VERSION], eax
    call space_create
    test eax, eax
    jz tn_fail
    mov [esi + TASK_PD], eax
    mov ecx, [ebp + TCB_TASK]           ; mcp: at most the creator's
    shl ecx, TASK_ENTRY_SHIFT
    add ecx, tasks
    mov eax, [ebx + R_EAX]
    and eax, L4_TASK_NEW_MCP_MASK
    cmp eax, [ecx + TASK_MCP]
    jbe tn_mcp
    mov eax, [ecx + TASK_MCP]
tn_mcp:
    mov [esi + TASK_MCP], eax
    mov eax, [ecx + TASK_NEST]
    inc eax
    cmp eax, 15
    jbe tn_nest
    mov eax, 15
tn_nest:
    mov [esi + TASK_NEST], eax
    push ebx
    push ebp
    push esi
    mov ecx, [ebx + R_ECX]
    mov edx, [ebx + R_EDX]
    mov esi, [ebx + R_EBX]
    mov edi, [ebx + R_EBP]
    mov eax, [tn_task]
    mov ebp, [ebp + TCB_PRIO]
    xor ebx, ebx
    call thread_create
    pop esi
    pop ebp
    pop ebx
    test eax, eax
    jz tn_no_thread
    mov edx, [eax + TCB_ID_LO]
    mov [ebx + R_ESI], edx
    mov edx, [eax + TCB_ID_HI]
    mov [ebx + R_EDI], edx
    ret
tn_no_thread:
    mov eax, [esi + TASK_PD]
    call space_destroy
    mov dword ptr [esi + TASK_PD], 0
tn_fail:
    mov dword ptr [ebx + R_ESI], 0
    mov dword ptr [ebx + R_EDI], 0
    ret

; task_delete: eax = an active task.  Deletes it and its clan; CF set (nothing deleted) if
; the current thread's task is among them.  Preserves ebx, esi, edi, ebp.
task_delete:
    push ebx
    push esi
    push edi
    push ebp
    shl eax, TASK_ENTRY_SHIFT
    add eax, tasks
    mov dword ptr [eax + TASK_DOOMED], 1
tdl_mark:
    xor edi, edi                        ; anything marked in this pass?
    mov ebx, tasks
    xor ecx, ecx
tdl_scan:
    cmp dword ptr [ebx + TASK_PD], 0
    je tdl_next
    cmp dword ptr [ebx + TASK_DOOMED], 0
    jne tdl_next
    mov eax, [ebx + TASK_CHIEF]
    shl eax, TASK_ENTRY_SHIFT
    add eax, tasks
    cmp dword ptr [eax + TASK_DOOMED], 0
    je tdl_next
    mov dword ptr [ebx + TASK_DOOMED], 1
    mov edi, 1
tdl_next:
    add ebx, TASK_ENTRY_SIZE
    inc ecx
    cmp ecx, L4_MAX_TASKS
    jb tdl_scan
    test edi, edi
    jnz tdl_mark
    mov eax, esp
    and eax, 0xFFFFFC00
    mov eax, [eax + TCB_TASK]
    shl eax, TASK_ENTRY_SHIFT
    add eax, tasks
    mov ebp, [eax + TASK_DOOMED]        ; 1: refuse, only unmark
    mov ebx, tasks
    xor ecx, ecx
tdl_destroy:
    cmp dword ptr [ebx + TASK_DOOMED], 0
    je tdl_destroy_next
    mov dword ptr [ebx + TASK_DOOMED], 0
    test ebp, ebp
    jnz tdl_destroy_next
    push ecx
    mov eax, ecx
    call task_destroy
    pop ecx
tdl_destroy_next:
    add ebx, TASK_ENTRY_SIZE
    inc ecx
    cmp ecx, L4_MAX_TASKS
    jb tdl_destroy
    cmp ebp, 1                          ; CF = (ebp < 1): clear when deleted
    cmc
    pop ebp
    pop edi
    pop esi
    pop ebx
    ret

; task_destroy: eax = task.  Its threads, TCB pages and address space go away; it becomes
; inactive (chief and version stay).  Clobbers eax, ecx, edx.
task_destroy:
    push ebx
    push esi
    mov ebx, eax
    xor ecx, ecx
tds_threads:
    mov eax, ebx
    mov edx, ecx
    call tcb_of
    cmp dword ptr [eax + TCB_ID_LO], 0
    je tds_next
    mov esi, eax
    push ecx
    call thread_delete
    pop ecx
tds_next:
    inc ecx
    cmp ecx, L4_LTHREADS
    jb tds_threads
    mov eax, ebx
    call tcb_pages_free
    mov esi, ebx
    shl esi, TASK_ENTRY_SHIFT
    add esi, tasks
    mov eax, [esi + TASK_PD]
    call space_destroy
    mov dword ptr [esi + TASK_PD], 0
    pop esi
    pop ebx
    ret

.section .data
.align 4
tn_task: .long 0

.section .bss
.align 4
tasks:                                  ; L4_MAX_TASKS entries of TASK_ENTRY_SIZE bytes
    .space 8192
