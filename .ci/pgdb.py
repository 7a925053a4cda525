"""Create or drop a scratch database on a server: pgdb.py create|drop SERVER_URL NAME."""

import asyncio
import sys

import asyncpg


async def main(action: str, server: str, name: str) -> None:
    conn = await asyncpg.connect(server + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if action == "create":
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


asyncio.run(main(*sys.argv[1:4]))
