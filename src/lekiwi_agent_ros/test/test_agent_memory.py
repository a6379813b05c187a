"""AgentMemory: RSS and USS summed over the agent's processes, from a fake and the real /proc."""

import os
from pathlib import Path

from lekiwi_agent_ros.uplink.agent_memory import AgentMemory


def _process(proc: Path, pid: int, sid: int, cmdline: str, rss_kb: int, private_kb: int) -> None:
    d = proc / str(pid)
    d.mkdir()
    (d / 'stat').write_text(f'{pid} (py thon (x)) S 1 {sid} {sid} 0 -1 4194560 0 0\n')
    (d / 'cmdline').write_bytes(cmdline.replace(' ', '\0').encode())
    (d / 'smaps_rollup').write_text(
        f'00400000-7ffd [rollup]\nRss:  {rss_kb} kB\nPss:  {rss_kb // 2} kB\n'
        f'Shared_Clean: 100 kB\nPrivate_Clean:  {private_kb // 4} kB\n'
        f'Private_Dirty:  {private_kb - private_kb // 4} kB\n')


def test_sums_the_agents_processes_of_its_session_only(tmp_path: Path) -> None:
    _process(tmp_path, 10, 7, 'python3 -m lekiwi_agent_ros.agent', 50_000, 30_000)
    _process(tmp_path, 11, 7, 'python3 /x/lib/lekiwi_agent_ros/teleop_monitor', 20_000, 8_000)
    _process(tmp_path, 12, 7, 'bash', 4_000, 1_000)  # same session, not the agent
    _process(tmp_path, 13, 9, 'python3 -m lekiwi_agent_ros.agent', 60_000, 40_000)  # another
    (tmp_path / 'self').mkdir()  # not a pid
    clock = [0.0]
    memory = AgentMemory(lambda: clock[0], proc=str(tmp_path), pid=10, period_s=5.0)
    assert sorted(memory.pids()) == ['10', '11']
    assert memory.sample() == (round(70_000 * 1024 / 1e6, 1), round(38_000 * 1024 / 1e6, 1))
    _process(tmp_path, 14, 7, 'python3 -m lekiwi_agent_ros.deploy', 10_000, 10_000)
    clock[0] = 4.0
    assert memory.sample()[0] == round(70_000 * 1024 / 1e6, 1)  # cached within the period
    clock[0] = 5.0
    assert memory.sample()[0] == round(80_000 * 1024 / 1e6, 1)


def test_a_process_without_proc_reports_nothing(tmp_path: Path) -> None:
    assert AgentMemory(lambda: 0.0, proc=str(tmp_path), pid=10).sample() == (None, None)


def test_this_process_reads_from_the_real_proc() -> None:
    rss, uss = AgentMemory(lambda: 0.0).sample()
    assert rss is not None and uss is not None and 0 < uss <= rss
    assert str(os.getpid()) in AgentMemory(lambda: 0.0).pids()
