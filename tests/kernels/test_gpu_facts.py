"""gpu_facts.py: one property query per device, stand-ins off the GPU."""

import torch

from graphpress.backends.triton import gpu_facts


def test_off_the_gpu_the_interpreter_stand_ins_are_returned():
    facts = gpu_facts.gpu_facts(torch.device("cpu"))
    assert facts == gpu_facts.INTERPRETER_FACTS and facts.major < 9  # nothing Hopper-only runs under the interpreter


def test_each_device_is_asked_once(monkeypatch):
    asked = []

    class Props:
        def __init__(self, index):
            self.name, self.multi_processor_count, self.major = f"gpu{index}", 100 + index, 8 + index

    def properties(index):
        asked.append(index)
        return Props(index)

    monkeypatch.setattr(gpu_facts, "_memo", {})
    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    for _ in range(3):
        assert gpu_facts.gpu_facts(torch.device("cuda", 0)) == ("gpu0", 100, 8)
        assert gpu_facts.gpu_facts(torch.device("cuda")).multiprocessors == 101  # the current device
    assert asked == [0, 1]
