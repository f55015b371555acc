"""The word count's sum as an asyncio handler (the state calls are awaited)."""

import millrace


@millrace.stateful
async def asum(ctx, r, st):
    try:
        n = int(r.value)
    except ValueError:
        raise millrace.RecordError(f"count {r.value!r} is not a number") from None
    total = n + int(await st.get() or 0)
    st.put(str(total))
    return millrace.Output(key=r.key, value=str(total))


if __name__ == "__main__":
    millrace.main(asum)
