"""enastool.search"""
