"""enastool.train"""
